"""Parameter and FLOP counts against hand counts and the model that actually runs."""

from __future__ import annotations

import pytest

from harness.config import ModelConfig
from workloads.flops import peak_flops_per_s, train_flops_per_token, transformer_param_counts


def test_dense_counts_by_hand():
    # V=10, D=4, L=2, F=8, T=6, tied, RoPE, RMSNorm
    m = ModelConfig(vocab_size=10, d_model=4, n_layers=2, n_heads=2, d_ff=8, seq_len=6)
    c = transformer_param_counts(m)
    per_layer = 4 * 16 + 2 * 4 * 8  # qkvo + fc/proj = 128
    assert c.total == 10 * 4 + 2 * (per_layer + 2 * 4) + 4  # emb + layers(+2 norms) + final norm
    assert c.total == 316 and c.active == 316
    assert c.matmul_active == 2 * per_layer + 40  # the tied head still multiplies
    # 6 * 296 + 12 * 2 * 6 * 4
    assert train_flops_per_token(c.matmul_active, 2, 6, 4) == 6 * 296 + 576


def test_moe_counts_by_hand():
    # layer 1 of 2 is MoE with 4 experts: router 4*4, experts 4 * 64
    m = ModelConfig(
        kind="moe", vocab_size=10, d_model=4, n_layers=2, n_heads=2, d_ff=8, seq_len=6, n_experts=4
    )
    c = transformer_param_counts(m)
    assert c.total == 316 - 64 + 16 + 4 * 64  # dense, minus one FFN, plus router and 4 experts
    assert c.active == 316 + 16  # one expert per token, plus the router
    assert c.matmul_active == 296 + 16


def test_counts_match_the_torch_models():
    torch = pytest.importorskip("torch")
    from workloads.torch.model import Transformer

    for kind, tie, pos, norm in [
        ("dense", True, "rope", "rmsnorm"),
        ("dense", False, "learned", "layernorm"),
        ("moe", True, "rope", "rmsnorm"),
    ]:
        m = ModelConfig(
            kind=kind,
            vocab_size=50,
            d_model=32,
            n_layers=3,
            n_heads=4,
            d_ff=64,
            seq_len=16,
            tie_embeddings=tie,
            positions=pos,
            norm=norm,
            n_experts=4,
        )
        model = Transformer(m)
        assert sum(p.numel() for p in model.parameters()) == transformer_param_counts(m).total
        logits, _ = model(torch.zeros(2, 16, dtype=torch.long))
        assert logits.shape == (2, 16, 50)


def test_peak_table_matches_specific_names_first():
    assert peak_flops_per_s("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_per_s("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_per_s("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_per_s("TPU v5 lite") == 197e12
    assert peak_flops_per_s("Some New Chip") is None
