"""Switch top-1 mixture-of-experts FFN (rules in workloads/moe_rules.py), fast dispatch path.

Dispatch without a Python loop over experts and without host syncs: each token's slot in its
expert's queue comes from a cumulative sum over a one-hot routing matrix; kept tokens are
copied into an (E, C, D) buffer, the experts run as two batched matmuls, and outputs are
gathered back. Dropped tokens point at a spare row that no expert reads and that is zero in
the output, so they get exactly zero expert output and no gradient through the experts.
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
        self.capacity_factor_train, self.capacity_factor_eval = (
            m.capacity_factor_train,
            m.capacity_factor_eval,
        )
        self.aux_loss_coef, self.z_loss_coef, self.jitter = m.aux_loss_coef, m.z_loss_coef, m.jitter
        self.router = nn.Linear(d_model, m.n_experts, bias=False)
        self.w_in_EDF = nn.Parameter(torch.empty(m.n_experts, d_model, d_ff))
        self.w_out_EFD = nn.Parameter(torch.empty(m.n_experts, d_ff, d_model))

    def route(
        self, x_ND: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """float32 router: (expert_N, gate_N, probs_NE, logits_NE)."""
        with torch.autocast(device_type=x_ND.device.type, enabled=False):
            x32 = x_ND.float()
            if self.training and self.jitter > 0:
                x32 = x32 * torch.empty_like(x32).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
            logits_NE = x32 @ self.router.weight.float().t()
            probs_NE = logits_NE.softmax(dim=-1)
            gate_N, expert_N = probs_NE.max(dim=-1)
        return expert_N, gate_N, probs_NE, logits_NE

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, T, D = x_BTD.shape
        E = self.n_experts
        x_ND = x_BTD.reshape(B * T, D)
        N = x_ND.shape[0]
        expert_N, gate_N, probs_NE, logits_NE = self.route(x_ND)
        cf = self.capacity_factor_train if self.training else self.capacity_factor_eval
        C = expert_capacity(N, E, cf)

        onehot_NE = F.one_hot(expert_N, E)
        position_N = (onehot_NE.cumsum(dim=0) * onehot_NE).sum(
            dim=-1
        ) - 1  # place in its expert's queue
        keep_N = position_N < C
        slot_N = torch.where(keep_N, expert_N * C + position_N, torch.full_like(expert_N, E * C))

        buffer = x_ND.new_zeros(E * C + 1, D).index_copy(0, slot_N, x_ND)
        in_ECD = buffer[: E * C].view(E, C, D)
        # two batched matmuls over all experts; autocast runs them in bf16 on GPU
        hidden_ECF = F.gelu(torch.bmm(in_ECD, self.w_in_EDF), approximate="tanh")
        out_ECD = torch.bmm(hidden_ECF, self.w_out_EFD)
        out_flat = torch.cat([out_ECD.reshape(E * C, D), out_ECD.new_zeros(1, D)])
        y_ND = (out_flat[slot_N].float() * gate_N.unsqueeze(-1)).to(x_BTD.dtype)

        routed_E = onehot_NE.float().mean(dim=0)  # f_i, before dropping
        stats = {
            "aux_loss": self.aux_loss_coef * E * (routed_E * probs_NE.mean(dim=0)).sum(),
            "z_loss": self.z_loss_coef * torch.logsumexp(logits_NE, dim=-1).pow(2).mean(),
            "dropped_frac": 1.0 - keep_N.float().mean(),
            "expert_load": routed_E,
        }
        return y_ND.view(B, T, D), stats
