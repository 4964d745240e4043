"""Parameter and FLOP counts for the benchmark transformers, and peak rates for MFU.

Convention (stated once, used everywhere):
  training FLOPs per token = 6 * N_matmul + 12 * n_layers * seq_len * d_model
where N_matmul counts the weights that take part in matrix products for one token: attention
q,k,v,o (4 d^2) and the FFN (2 d d_ff) in every layer, plus the output head (V d, tied or not).
The input embedding lookup and norm gains do no matmul and are not counted. The second term
is attention's QK^T and AV (4 T d forward per layer, x3 for forward+backward), not halved for
causal masking. This is PaLM's MFU convention (Chowdhery et al. 2022, appendix B). For a
Switch MoE, N_matmul counts the one expert a token is routed to plus the router (active FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamCounts:
    total: int
    active: int
    matmul_active: int  # N_matmul of the convention above


def transformer_param_counts(m) -> ParamCounts:
    """Counts for a `ModelConfig` (dense, or Switch MoE in every `moe_every`-th FFN)."""
    from workloads.moe_rules import is_moe_layer

    d, v, f = m.d_model, m.vocab_size, m.d_ff
    norm_params = d if m.norm == "rmsnorm" else 2 * d  # gain (and bias for LayerNorm)
    attention = 4 * d * d
    ffn = 2 * d * f
    total = v * d + (m.seq_len * d if m.positions == "learned" else 0) + norm_params
    total += 0 if m.tie_embeddings else v * d
    active = total
    matmul = v * d  # the output head multiplies whether or not it is tied
    for layer in range(m.n_layers):
        moe = m.kind == "moe" and is_moe_layer(layer, m.moe_every)
        router = d * m.n_experts if moe else 0
        layer_total = attention + 2 * norm_params + router + (m.n_experts * ffn if moe else ffn)
        layer_active = attention + 2 * norm_params + router + ffn  # top-1: one expert per token
        total += layer_total
        active += layer_active
        matmul += attention + router + ffn
    return ParamCounts(total=total, active=active, matmul_active=matmul)


def train_flops_per_token(matmul_params: int, n_layers: int, seq_len: int, d_model: int) -> float:
    return 6.0 * matmul_params + 12.0 * n_layers * seq_len * d_model


# Dense peak matrix rates in TFLOP/s (bf16 unless noted), from vendor datasheets. Order
# matters: the first substring found in the device name wins, so specific names come first.
PEAK_TFLOPS: list[tuple[str, float, str]] = [
    ("H100 PCIe", 756.0, "NVIDIA H100 datasheet, PCIe, bf16 dense"),
    ("H100", 989.0, "NVIDIA H100 datasheet, SXM, bf16 dense"),
    ("H200", 989.0, "NVIDIA H200 datasheet, SXM, bf16 dense"),
    ("GH200", 989.0, "NVIDIA GH200 datasheet, bf16 dense"),
    ("A100", 312.0, "NVIDIA A100 datasheet, bf16 dense"),
    ("V100", 125.0, "NVIDIA V100 datasheet, fp16 tensor core"),
    ("TPU v4", 275.0, "Google Cloud TPU v4 docs, bf16"),
    ("TPU v5 lite", 197.0, "Google Cloud TPU v5e docs, bf16"),
    ("TPU v5e", 197.0, "Google Cloud TPU v5e docs, bf16"),
    ("TPU v5p", 459.0, "Google Cloud TPU v5p docs, bf16"),
    ("TPU v6", 918.0, "Google Cloud TPU v6e (Trillium) docs, bf16"),
]


def peak_flops_per_s(device_name: str) -> float | None:
    """Peak dense matrix FLOP/s of one device, or None when the device is not in the table."""
    for needle, tflops, _source in PEAK_TFLOPS:
        if needle.lower() in device_name.lower():
            return tflops * 1e12
    return None
