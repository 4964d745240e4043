from __future__ import annotations

import pytest


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch working directory so default result paths land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
