"""A vendor's own implementation of a joulebench dense benchmark, as a custom Workload class.

Written from the benchmark's definition (configs/benchmark/lm-dense-*.yaml), not from
joulebench's model code: pre-norm decoder, RMSNorm, rotary positions, tanh-GELU MLP, tied
embeddings, GPT-2 init, AdamW with linear warm-up and cosine decay, gradient clipping, on the
benchmark's own data. `joulebench equivalence --target examples.torch_dense_reimpl:DenseReimpl
benchmark=lm-dense-tiny` checks it against the reference before it may claim closed division;
`LowLearningRate` is the same code with a learning rate the benchmark does not allow, which
the check refuses.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workloads.data import build_token_source


class Decoder(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m, d, h = m, m.d_model, m.n_heads
        self.emb = nn.Embedding(m.vocab_size, d)
        self.layers = nn.ModuleList()
        for _ in range(m.n_layers):
            self.layers.append(
                nn.ModuleDict(
                    {
                        "n1": nn.RMSNorm(d, eps=1e-6),
                        "qkv": nn.Linear(d, 3 * d, bias=False),
                        "out": nn.Linear(d, d, bias=False),
                        "n2": nn.RMSNorm(d, eps=1e-6),
                        "up": nn.Linear(d, m.d_ff, bias=False),
                        "down": nn.Linear(m.d_ff, d, bias=False),
                    }
                )
            )
        self.norm = nn.RMSNorm(d, eps=1e-6)
        k = d // h
        freq = 1.0 / 10000 ** (torch.arange(0, k, 2).float() / k)
        angle = torch.outer(torch.arange(m.seq_len).float(), freq)
        self.register_buffer("cos", angle.cos(), persistent=False)
        self.register_buffer("sin", angle.sin(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = (
                    1 / math.sqrt(2 * m.n_layers)
                    if name.endswith(("out.weight", "down.weight"))
                    else 1
                )
                nn.init.normal_(p, std=m.init_std * scale)

    def rotate(self, x):
        a, b = x.chunk(2, dim=-1)
        cos, sin = self.cos[: x.shape[-2]], self.sin[: x.shape[-2]]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def forward(self, tokens):
        B, T = tokens.shape
        h, x = self.m.n_heads, self.emb(tokens)
        for layer in self.layers:
            q, k, v = layer["qkv"](layer["n1"](x)).view(B, T, 3, h, -1).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(self.rotate(q), self.rotate(k), v, is_causal=True)
            x = x + layer["out"](att.transpose(1, 2).reshape(B, T, -1))
            x = x + layer["down"](F.gelu(layer["up"](layer["n2"](x)), approximate="tanh"))
        return self.norm(x) @ self.emb.weight.T


class DenseReimpl:
    lr_scale = 1.0

    def __init__(self, bench, framework, seed: int):
        self.bench, self.o = bench, bench.optim
        self.data = build_token_source(
            bench.data, bench.model, bench.global_batch * bench.eval_batches
        )
        self.rng = np.random.default_rng([seed, bench.data.seed])
        self.evals = self.data.eval_set(bench.global_batch, bench.eval_batches)
        torch.manual_seed(seed)
        self.model = Decoder(bench.model)
        matrices = [p for p in self.model.parameters() if p.dim() >= 2]
        gains = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": matrices, "weight_decay": self.o.weight_decay},
                {"params": gains, "weight_decay": 0.0},
            ],
            lr=self.o.lr,
            betas=(self.o.beta1, self.o.beta2),
        )
        self.step_index = 0
        self.info = {
            "framework": "torch-reimpl",
            "framework_version": torch.__version__,
            "model_kind": "dense",
            "precision": "fp32",
            "tokens_per_step": bench.global_batch * bench.model.seq_len,
        }

    def lr(self) -> float:
        o, s, total = self.o, self.step_index, self.bench.max_steps
        if s < o.lr_warmup_steps:
            return o.lr * (s + 1) / o.lr_warmup_steps
        done = min(1.0, (s - o.lr_warmup_steps) / max(1, total - o.lr_warmup_steps))
        floor = o.lr * o.min_lr_ratio
        return (floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * done))) * self.lr_scale

    def next_batch(self):
        return self.data.train_batch(self.bench.global_batch, self.rng)

    def train_step(self, batch) -> float:
        for group in self.opt.param_groups:
            group["lr"] = self.lr()
        logits = self.model(torch.from_numpy(batch.inputs_BT))
        loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(batch.targets_BT).flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.o.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step_index += 1
        return float(loss.detach())

    def sync(self) -> None:
        pass  # CPU tensors: every step has finished when it returns

    @torch.no_grad()
    def evaluate(self) -> float:
        losses = [
            F.cross_entropy(
                self.model(torch.from_numpy(b.inputs_BT)).flatten(0, 1),
                torch.from_numpy(b.targets_BT).flatten(),
            )
            for b in self.evals
        ]
        return float(torch.stack(losses).mean())


class LowLearningRate(DenseReimpl):
    lr_scale = 0.3  # a learning rate the benchmark does not allow
