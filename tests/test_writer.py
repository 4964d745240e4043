"""The atomic writer: readers see the whole old file or the whole new one, never a mix."""

from __future__ import annotations

import json
import os
import stat

import pytest

from harness.results import writer


def test_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.json"
    writer.atomic_write_json(path, {"a": 1})
    writer.atomic_write_json(path, {"a": 2, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    writer.atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(writer.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        writer.atomic_write_text(path, "new content that never lands")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # temp file cleaned up


def test_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        writer.atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644


def test_nan_is_refused_not_written(tmp_path):
    with pytest.raises(ValueError):
        writer.atomic_write_json(tmp_path / "r.json", {"x": float("nan")})
    assert not (tmp_path / "r.json").exists()


def test_sha256_matches_known_digest(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert (
        writer.sha256_file(tmp_path / "f")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert writer.sha256_text("abc") == writer.sha256_file(tmp_path / "f")
