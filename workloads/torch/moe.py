"""Switch top-1 mixture-of-experts FFN (rules in workloads/moe_rules.py), fast dispatch path.

Tokens are routed in `routing_groups` equal groups (GShard / Switch "groups"): capacity and the
load-balancing loss are per group, so the maths does not depend on how many ranks share the
batch. Dispatch has no Python loop over experts and no host sync: each token's slot in its
expert's queue comes from a cumulative sum over a one-hot routing matrix; kept tokens are
copied into a (G, E, C, D) buffer, the experts run as two batched matmuls, and outputs are
gathered back. Dropped tokens point at a spare row that no expert reads and that is zero in the
output, so they get exactly zero expert output and no gradient through the experts.

With expert parallelism (workloads/torch/parallel.py) each rank holds E / W experts and the
buffer's expert axis is exchanged with two all-to-alls of equal splits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workloads.moe_rules import expert_capacity


class SwitchFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, m):
        super().__init__()
        self.n_experts = m.n_experts
        self.routing_groups = m.routing_groups  # groups in this module's (local) batch
        self.capacity_factor_train, self.capacity_factor_eval = (
            m.capacity_factor_train,
            m.capacity_factor_eval,
        )
        self.aux_loss_coef, self.z_loss_coef, self.jitter = m.aux_loss_coef, m.z_loss_coef, m.jitter
        self.router = nn.Linear(d_model, m.n_experts, bias=False)
        self.w_in_EDF = nn.Parameter(torch.empty(m.n_experts, d_model, d_ff))
        self.w_out_EFD = nn.Parameter(torch.empty(m.n_experts, d_ff, d_model))
        self.expert_parallel = None  # set by workloads/torch/parallel.py: shard_experts

    def route(
        self, x_GSD: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """float32 router: (expert_GS, gate_GS, probs_GSE, logits_GSE)."""
        with torch.autocast(device_type=x_GSD.device.type, enabled=False):
            x32 = x_GSD.float()
            if self.training and self.jitter > 0:
                x32 = x32 * torch.empty_like(x32).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
            logits_GSE = x32 @ self.router.weight.float().t()
            probs_GSE = logits_GSE.softmax(dim=-1)
            gate_GS, expert_GS = probs_GSE.max(dim=-1)
        return expert_GS, gate_GS, probs_GSE, logits_GSE

    def experts(self, x_EXD: torch.Tensor) -> torch.Tensor:
        """This rank's experts on their token rows; autocast runs the matmuls in bf16 on GPU."""
        hidden_EXF = F.gelu(torch.bmm(x_EXD, self.w_in_EDF), approximate="tanh")
        return torch.bmm(hidden_EXF, self.w_out_EFD)

    def _run_experts(self, in_GECD: torch.Tensor) -> torch.Tensor:
        G, E, C, D = in_GECD.shape
        in_EGCD = in_GECD.transpose(0, 1)
        if self.expert_parallel is not None:
            out_EGCD = self.expert_parallel.run(in_EGCD.contiguous(), self.experts)
        else:
            out_EGCD = self.experts(in_EGCD.reshape(E, G * C, D)).view(E, G, C, D)
        return out_EGCD.transpose(0, 1)

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, T, D = x_BTD.shape
        E, G = self.n_experts, self.routing_groups
        x_GSD = x_BTD.reshape(G, B * T // G, D)
        S = x_GSD.shape[1]
        expert_GS, gate_GS, probs_GSE, logits_GSE = self.route(x_GSD)
        cf = self.capacity_factor_train if self.training else self.capacity_factor_eval
        C = expert_capacity(S, E, cf)

        onehot_GSE = F.one_hot(expert_GS, E)
        position_GS = (onehot_GSE.cumsum(dim=1) * onehot_GSE).sum(dim=-1) - 1  # queue place
        keep_GS = position_GS < C
        group_G1 = torch.arange(G, device=x_BTD.device).unsqueeze(1)
        slot_GS = torch.where(
            keep_GS,
            (group_G1 * E + expert_GS) * C + position_GS,
            torch.full_like(expert_GS, G * E * C),
        )
        slot_N = slot_GS.flatten()
        buffer = x_BTD.new_zeros(G * E * C + 1, D).index_copy(0, slot_N, x_GSD.reshape(-1, D))
        out_GECD = self._run_experts(buffer[: G * E * C].view(G, E, C, D))
        out_flat = torch.cat([out_GECD.reshape(G * E * C, D), out_GECD.new_zeros(1, D)])
        y_ND = (out_flat[slot_N].float() * gate_GS.reshape(-1, 1)).to(x_BTD.dtype)

        routed_GE = onehot_GSE.float().mean(dim=1)  # f_i per group, before dropping
        balance_G = (routed_GE * probs_GSE.mean(dim=1)).sum(dim=-1)
        stats = {
            "aux_loss": self.aux_loss_coef * E * balance_G.mean(),
            "z_loss": self.z_loss_coef * torch.logsumexp(logits_GSE, dim=-1).pow(2).mean(),
            "dropped_frac": 1.0 - keep_GS.float().mean(),
            "expert_load": routed_GE.mean(dim=0),
        }
        return y_ND.view(B, T, D), stats
