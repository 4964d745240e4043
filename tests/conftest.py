from __future__ import annotations

import pytest


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch working directory so default result paths land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory):
    """(run dirs, system file, submission): five seeds of lm-dense-tiny, simulated meter, 20
    steps, the target met at the one eval, packaged open. Built once for the tests that copy it
    and break it (tests/test_hostile.py, tests/test_validate_fuzz.py); none writes into it."""
    from tests.submission_helpers import build_submission

    overrides = [
        "benchmark.max_steps=20",
        "benchmark.eval_every_steps=20",
        "benchmark.target.threshold=9",
    ]
    return build_submission(tmp_path_factory.mktemp("tiny-package"), overrides)
