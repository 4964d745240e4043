"""Real text: `joulebench data prepare` writes nanoGPT .bin byte tokens and a manifest, and the
text benchmarks train on it. The CI-sized text is this repository's own README."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from harness.cli import main
from tests.helpers import REPO, load_result


def test_prepare_writes_byte_tokens_and_a_manifest(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    (corpus / "b").mkdir(parents=True)
    (corpus / "a.txt").write_bytes(b"To be, or not to be.")
    (corpus / "b" / "c.md").write_bytes("Élan — vital".encode())  # multi-byte UTF-8 stays bytes
    (corpus / "b" / "skip.bin").write_bytes(b"\x00\x01")  # not text: left out of a folder
    readme = REPO / "README.md"
    out = tmp_path / "data" / "text.bin"
    assert main(["data", "prepare", str(corpus), str(readme), "-o", str(out)]) == 0
    assert "byte tokens from 3 file(s)" in capsys.readouterr().out
    expected = b"\n".join([b"To be, or not to be.", "Élan — vital".encode(), readme.read_bytes()])
    tokens = np.fromfile(out, dtype=np.uint16)
    assert tokens.tobytes() == np.frombuffer(expected, np.uint8).astype(np.uint16).tobytes()
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert (
        manifest["tokens"]
        == len(expected)
        == 20 + 1 + len("Élan — vital".encode()) + 1 + len(readme.read_bytes())
    )
    assert [s["path"] for s in manifest["sources"]] == [
        str(corpus / "a.txt"),
        str(corpus / "b" / "c.md"),
        str(readme),
    ]
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(b"To be, or not to be.").hexdigest()
    assert manifest["sources"][1]["bytes"] == 15  # 12 characters: É is 2 bytes, — is 3
    assert manifest["bin_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (manifest["dtype"], manifest["tokenizer"], manifest["vocab_size"]) == (
        "uint16",
        "byte",
        256,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nowhere.txt", "-o", "x.bin"], "nowhere.txt is not a file or folder"),
        (["short.txt", "-o", "x.bin"], "fewer than 1024 tokens"),
        (["short.txt", "-o", "x.npy"], "must end in .bin"),
    ],
)
def test_prepare_errors_are_one_line(in_tmp, capsys, args, says):
    (in_tmp / "short.txt").write_text("too short")
    assert main(["data", "prepare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_text_benchmark_trains_on_prepared_text(in_tmp, capsys):
    out = in_tmp / "readme.bin"
    assert main(["data", "prepare", str(REPO / "README.md"), "-o", str(out)]) == 0
    # the text benchmark's shape is a GPU's; the same data path through the tiny model on CPU
    tiny = ["benchmark=lm-dense-tiny", "benchmark.data.kind=bin", f"benchmark.data.path={out}"]
    assert main(["run", *tiny, "meter=simulated", "run_dir=small_vocab"]) == 2
    assert "beyond benchmark.model.vocab_size=64" in capsys.readouterr().err
    code = main(
        [
            "run",
            *tiny,
            "benchmark.model.vocab_size=256",
            "benchmark.data.eval_tokens=2048",
            "benchmark.max_steps=30",
            "benchmark.eval_every_steps=30",
            "benchmark.target.threshold=9",
            "meter=simulated",
            "run_dir=r",
        ]
    )
    assert code == 0
    r = load_result(in_tmp / "r")
    assert r["workload"]["loss_floor_nats"] is None  # real text has no computable floor
    first, last = r["windows"][0]["train_loss"], r["metrics"]["evals"][-1]["eval_loss"]
    assert last < first < np.log(256) + 0.5  # it learns the text's bytes


def test_the_text_pair_composes_and_asks_for_its_data(capsys):
    for name in ("lm-dense-text-small", "lm-moe-text-small"):
        assert main(["run", f"benchmark={name}", "--print-config"]) == 0
        cfg = capsys.readouterr().out
        assert "vocab_size: 256" in cfg and "kind: bin" in cfg and "PROVISIONAL" not in cfg
        assert main(["run", f"benchmark={name}", "meter=simulated"]) == 2
        assert "needs benchmark.data.path" in capsys.readouterr().err
