"""Framework-neutral data: fixed eval sets, seeded training order, real text and .bin files."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import DataConfig, ModelConfig
from harness.errors import ConfigError
from workloads.data import build_token_source


def test_eval_set_is_fixed_and_train_order_follows_the_seed():
    model = ModelConfig(vocab_size=64, seq_len=16)
    src = build_token_source(DataConfig(train_tokens=20_000), model, n_eval_sequences=8)
    a, b = src.eval_set(4, 2), src.eval_set(4, 2)
    assert all(np.array_equal(x.inputs_BT, y.inputs_BT) for x, y in zip(a, b, strict=True))
    assert a[0].inputs_BT.shape == (4, 16)
    np.testing.assert_array_equal(
        a[0].inputs_BT[:, 1:], a[0].targets_BT[:, :-1]
    )  # targets are shifted inputs
    t1 = src.train_batch(4, np.random.default_rng([1, 2]))
    t2 = src.train_batch(4, np.random.default_rng([1, 2]))
    t3 = src.train_batch(4, np.random.default_rng([3, 2]))
    assert np.array_equal(t1.inputs_BT, t2.inputs_BT) and not np.array_equal(
        t1.inputs_BT, t3.inputs_BT
    )


def test_text_file_is_byte_tokens(tmp_path):
    text = ("the quick brown fox jumps over the lazy dog. " * 200).encode()
    (tmp_path / "c.txt").write_bytes(text)
    src = build_token_source(
        DataConfig(kind="text", path=str(tmp_path / "c.txt"), eval_tokens=500),
        ModelConfig(vocab_size=256, seq_len=32),
        n_eval_sequences=4,
    )
    batch = src.train_batch(2, np.random.default_rng(0))
    assert bytes(batch.inputs_BT[0].astype(np.uint8)) in text


def test_bin_memmap_uint16_and_vocab_check(tmp_path):
    tokens = (np.arange(5000) % 1000).astype(np.uint16)
    tokens.tofile(tmp_path / "train.bin")
    cfg = DataConfig(kind="bin", path=str(tmp_path / "train.bin"), eval_tokens=400, dtype="uint16")
    src = build_token_source(cfg, ModelConfig(vocab_size=1000, seq_len=8), n_eval_sequences=4)
    batch = src.train_batch(3, np.random.default_rng(0))
    assert (
        (batch.targets_BT - batch.inputs_BT) % 1000 == 1
    ).all()  # consecutive ids survive the memmap
    # ids up to 999 do not fit 500: said when the data is opened, before any training
    with pytest.raises(ConfigError, match="token id 999, beyond benchmark.model.vocab_size=500"):
        build_token_source(cfg, ModelConfig(vocab_size=500, seq_len=8), n_eval_sequences=4)


def test_missing_data_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a readable file"):
        build_token_source(
            DataConfig(kind="bin", path=str(tmp_path / "nope.bin")), ModelConfig(), 4
        )
