"""Parameter and FLOP counts against hand counts and the model that actually runs."""

from __future__ import annotations

import pytest

from harness.config import ModelConfig
from workloads.flops import dense_param_counts, peak_flops_per_s, train_flops_per_token


def test_dense_counts_by_hand():
    # V=10, D=4, L=2, F=8, T=6, tied, RoPE, RMSNorm
    c = dense_param_counts(
        10, 4, 2, 8, 6, tie_embeddings=True, learned_positions=False, norm="rmsnorm"
    )
    per_layer = 4 * 16 + 2 * 4 * 8  # qkvo + fc/proj = 128
    assert (
        c.total == 10 * 4 + 2 * (per_layer + 2 * 4) + 4
    )  # emb + layers(+2 norms) + final norm = 316
    assert c.total == 316
    assert c.matmul_active == 2 * per_layer + 40  # the tied head still multiplies
    # 6 * 296 + 12 * 2 * 6 * 4
    assert train_flops_per_token(c.matmul_active, 2, 6, 4) == 6 * 296 + 576


def test_counts_match_the_torch_model():
    torch = pytest.importorskip("torch")
    from workloads.torch.model import Transformer

    for tie, pos, norm in [(True, "rope", "rmsnorm"), (False, "learned", "layernorm")]:
        m = ModelConfig(
            vocab_size=50,
            d_model=32,
            n_layers=3,
            n_heads=4,
            d_ff=64,
            seq_len=16,
            tie_embeddings=tie,
            positions=pos,
            norm=norm,
        )
        model = Transformer(m)
        counts = dense_param_counts(50, 32, 3, 64, 16, tie, pos == "learned", norm)
        assert sum(p.numel() for p in model.parameters()) == counts.total
        logits = model(torch.zeros(2, 16, dtype=torch.long))
        assert logits.shape == (2, 16, 50)


def test_peak_table_matches_specific_names_first():
    assert peak_flops_per_s("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_per_s("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_per_s("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_per_s("Some New Chip") is None
