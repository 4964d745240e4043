"""The obvious Switch MoE: a Python loop over experts. Fast paths are checked against it."""

from __future__ import annotations

import math


def loop_switch_ffn(x_ND, router_w_ED, w_in_EDF, w_out_EFD, capacity_factor: float):
    """Top-1 Switch FFN written plainly: route in float32, keep each expert's first C tokens
    in token order, run each expert on its tokens, scale by the gate, zeros for dropped tokens."""
    import torch
    import torch.nn.functional as F

    n_tokens, n_experts = x_ND.shape[0], router_w_ED.shape[0]
    capacity = max(1, math.ceil(capacity_factor * n_tokens / n_experts))
    probs_NE = (x_ND.float() @ router_w_ED.float().t()).softmax(dim=-1)
    gate_N, expert_N = probs_NE.max(dim=-1)
    rows = []
    y_ND = torch.zeros_like(x_ND)
    for e in range(n_experts):
        mine = (expert_N == e).nonzero().flatten()[:capacity]
        if mine.numel() == 0:
            continue
        h = F.gelu(x_ND[mine] @ w_in_EDF[e], approximate="tanh") @ w_out_EFD[e]
        rows.append((mine, h * gate_N[mine, None]))
    for mine, out in rows:
        y_ND = y_ND.index_put((mine,), out)
    return y_ND
