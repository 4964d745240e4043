"""Decoder-only transformer (pre-norm, RoPE or learned positions, fused SDPA attention).

Shapes are in names: B batch, T sequence, D model width, H heads, K head width, F FFN width,
V vocabulary, N tokens, E experts. With model.kind == "moe" every `moe_every`-th FFN is a
Switch top-1 MoE layer (workloads/torch/moe.py); everything else is shared with the dense model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workloads.moe_rules import is_moe_layer
from workloads.torch.moe import SwitchFFN


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        x32 = x_BTD.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight).to(x_BTD.dtype)


def make_norm(kind: str, dim: int) -> nn.Module:
    return RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim, eps=1e-6)


def rope_tables(
    seq_len: int, head_dim: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [T, K/2] for rotary embeddings (Su et al. 2021), rotate-half layout."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles_TK = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles_TK.cos(), angles_TK.sin()


def apply_rope(x_BHTK: torch.Tensor, cos_TK: torch.Tensor, sin_TK: torch.Tensor) -> torch.Tensor:
    half = x_BHTK.shape[-1] // 2
    x1, x2 = x_BHTK[..., :half].float(), x_BHTK[..., half:].float()
    cos, sin = cos_TK[: x_BHTK.shape[-2]], sin_TK[: x_BHTK.shape[-2]]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x_BHTK.dtype)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self, x_BTD: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        B, T, D = x_BTD.shape
        q, k, v = self.qkv(x_BTD).split(D, dim=-1)
        q_BHTK, k_BHTK, v_BHTK = (
            t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v)
        )
        if rope is not None:
            q_BHTK, k_BHTK = apply_rope(q_BHTK, *rope), apply_rope(k_BHTK, *rope)
        out_BHTK = F.scaled_dot_product_attention(q_BHTK, k_BHTK, v_BHTK, is_causal=True)
        return self.proj(out_BHTK.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=False)
        self.proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.proj(F.gelu(self.fc(x_BTD), approximate="tanh")), None


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, norm: str, ffn: nn.Module):
        super().__init__()
        self.norm_attn = make_norm(norm, d_model)
        self.attn = Attention(d_model, n_heads)
        self.norm_ffn = make_norm(norm, d_model)
        self.ffn = ffn

    def forward(self, x_BTD: torch.Tensor, rope) -> tuple[torch.Tensor, dict | None]:
        x_BTD = x_BTD + self.attn(self.norm_attn(x_BTD), rope)
        ffn_BTD, stats = self.ffn(self.norm_ffn(x_BTD))
        return x_BTD + ffn_BTD, stats


class Transformer(nn.Module):
    """Dense when model.kind == "dense"; Switch MoE in every `moe_every`-th FFN when "moe"."""

    def __init__(self, model_cfg):
        super().__init__()
        m = model_cfg
        self.cfg = m

        def make_ffn(layer: int) -> nn.Module:
            if m.kind == "moe" and is_moe_layer(layer, m.moe_every):
                return SwitchFFN(m.d_model, m.d_ff, m)
            return MLP(m.d_model, m.d_ff)

        self.tok_emb = nn.Embedding(m.vocab_size, m.d_model)
        self.pos_emb = nn.Embedding(m.seq_len, m.d_model) if m.positions == "learned" else None
        self.blocks = nn.ModuleList(
            Block(m.d_model, m.n_heads, m.norm, make_ffn(i)) for i in range(m.n_layers)
        )
        self.norm_out = make_norm(m.norm, m.d_model)
        self.head = nn.Linear(m.d_model, m.vocab_size, bias=False)
        if m.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        if m.positions == "rope":
            cos, sin = rope_tables(m.seq_len, m.d_model // m.n_heads)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, std) everywhere, residual output projections (attention and FFN
        out, experts' w_out too) scaled by 1/sqrt(2 L). Routers start at N(0, std) like the rest."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm gains stay at their defaults (1, and 0 for LayerNorm bias)
            residual_out = name.endswith(("proj.weight", "w_out_EFD"))
            scale = 1.0 / math.sqrt(2 * self.cfg.n_layers) if residual_out else 1.0
            nn.init.normal_(p, mean=0.0, std=std * scale)

    def forward(
        self, tokens_BT: torch.Tensor
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Logits and the router statistics of every MoE layer (empty for a dense model)."""
        x_BTD = self.tok_emb(tokens_BT)
        if self.pos_emb is not None:
            x_BTD = x_BTD + self.pos_emb.weight[: tokens_BT.shape[1]]
        rope = (self.rope_cos, self.rope_sin) if self.pos_emb is None else None
        moe_stats = []
        for block in self.blocks:
            x_BTD, stats = block(x_BTD, rope)
            if stats is not None:
                moe_stats.append(stats)
        return self.head(self.norm_out(x_BTD)), moe_stats


def lm_loss(logits_BTV: torch.Tensor, targets_BT: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy in nats, computed in float32."""
    return F.cross_entropy(logits_BTV.float().flatten(0, 1), targets_BT.flatten())


def training_loss(logits_BTV, targets_BT, moe_stats) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss to differentiate, step statistics as one 1-D tensor: no host sync).

    Statistics: [cross entropy, aux loss, z loss, dropped fraction, expert load (E values)],
    aux and z summed over MoE layers, dropped fraction and load averaged over them.
    """
    ce = lm_loss(logits_BTV, targets_BT)
    if not moe_stats:
        return ce, ce.detach().reshape(1)
    aux = torch.stack([s["aux_loss"] for s in moe_stats]).sum()
    z = torch.stack([s["z_loss"] for s in moe_stats]).sum()
    dropped = torch.stack([s["dropped_frac"] for s in moe_stats]).mean()
    load_E = torch.stack([s["expert_load"] for s in moe_stats]).mean(dim=0)
    stats = torch.cat([torch.stack([ce, aux, z, dropped]).detach(), load_E.detach()])
    return ce + aux + z, stats
