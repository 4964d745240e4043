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


def scaled_routing(
    n_experts: int,
    global_batch: int,
    seq_len: int,
    tokens_per_expert: int = 64,
    capacity_factor: float = 1.25,
    slack_sigmas: float = 2.0,
) -> tuple[int, float]:
    """(routing_groups, capacity_factor_train) that keep drops rare at any expert count.

    A routing group of S tokens gives each of E experts S/E tokens on average, and a balanced
    router's count per expert varies by about sqrt(S/E): fixed groups starve experts as E grows
    (128-token groups give 16 experts 8 tokens each, and drop about a tenth of the tokens). So
    groups grow with the experts, to `tokens_per_expert` per expert (the most groups of whole
    sequences that still hold that many), and where the batch is too small for that, the
    capacity factor grows instead, keeping the slack per expert at `slack_sigmas` such
    deviations: cf = max(capacity_factor, 1 + slack_sigmas / sqrt(S/E)). At 64 tokens per expert
    two deviations are Switch's 1.25 exactly; a learning router is less balanced than chance,
    so a study may ask for more."""
    want = tokens_per_expert * n_experts
    tokens = global_batch * seq_len
    groups = max(
        (g for g in range(1, global_batch + 1) if global_batch % g == 0 and tokens // g >= want),
        default=1,
    )
    per_expert = tokens / groups / n_experts
    return groups, round(max(capacity_factor, 1.0 + slack_sigmas / math.sqrt(per_expert)), 4)


def routing_extra(bench) -> dict:
    """{"routing": ...} for WorkloadInfo.extra (MoE only): the capacity each group gives each
    expert, so a result says how many tokens its routing could drop, not only its factors."""
    m = bench.model
    if m.kind != "moe":
        return {}
    tokens = bench.global_batch * m.seq_len // m.routing_groups
    return {
        "routing": {
            "experts": m.n_experts,
            "routing_groups": m.routing_groups,
            "tokens_per_group": tokens,
            "capacity_factor_train": m.capacity_factor_train,
            "capacity_train": expert_capacity(tokens, m.n_experts, m.capacity_factor_train),
            "capacity_factor_eval": m.capacity_factor_eval,
            "capacity_eval": expert_capacity(tokens, m.n_experts, m.capacity_factor_eval),
        }
    }
