"""Switch Transformer routing rules shared by the torch and JAX MoE layers.

Fedus et al. 2021, "Switch Transformers" (and ST-MoE, Zoph et al. 2022):
- top-1 routing; the router runs in float32;
- expert capacity = ceil(capacity_factor * tokens / experts), with separate train and eval
  factors; tokens claim slots in token order, and a token past capacity is dropped: it gets
  zero expert output and rides the residual connection;
- load-balancing loss = alpha * N * sum_i f_i * P_i, where f_i is the fraction of tokens routed
  to expert i (before dropping) and P_i the mean router probability of expert i (eq. 4);
- router z-loss = coef * mean(logsumexp(logits)^2) (ST-MoE eq. 5);
- optional multiplicative jitter on the router input, in training only.
"""

from __future__ import annotations

import math


def expert_capacity(n_tokens: int, n_experts: int, capacity_factor: float) -> int:
    """Slots per expert for a group of n_tokens; at least 1 so every expert can take a token."""
    return max(1, math.ceil(capacity_factor * n_tokens / n_experts))


def is_moe_layer(layer: int, moe_every: int) -> bool:
    """MoE replaces every `moe_every`-th FFN, starting with the second layer (1, 3, 5, ... for 2)."""
    return moe_every > 0 and layer % moe_every == moe_every - 1
