"""Value checks the type system cannot make: ranges, choices and cross-field rules.

Each failed check is one ConfigError naming the key, the value, the rule and a fix.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness.config import JoulebenchConfig
from harness.errors import ConfigError


def _require(ok: bool, key: str, value: Any, rule: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value} {rule}.", fix)


def _check_choices(node: Any, path: str) -> None:
    """Every field declared with harness.config.choice takes one of its options."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{path}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_choices(value, f"{key}.")
        elif "choices" in f.metadata:
            meta = f.metadata
            _require(value in meta["choices"], meta["key"] or key, value, meta["rule"], meta["fix"])


def validate(cfg: JoulebenchConfig) -> None:
    """Check the values the type system cannot: ranges, choices and cross-field rules."""
    _check_choices(cfg, "")
    b, m, t = cfg.benchmark, cfg.benchmark.model, cfg.benchmark.target
    for key in ("global_batch", "max_steps", "window_steps", "eval_every_steps", "eval_batches"):
        value = getattr(b, key)
        _require(
            value > 0,
            f"benchmark.{key}",
            value,
            "must be > 0",
            f"set benchmark.{key} to a positive integer",
        )
    _require(b.warmup_steps >= 0, "benchmark.warmup_steps", b.warmup_steps, "must be >= 0",
             "use 0 to skip warm-up")  # fmt: skip
    _require(b.role == (m.kind if b.pair else None), "benchmark.role", b.role,
             f"must be the model's kind ({m.kind}) in a pair, and unset outside one",
             f"set benchmark.pair and benchmark.role={m.kind}, or neither")  # fmt: skip
    _require(
        b.eval_every_steps % b.window_steps == 0,
        "benchmark.eval_every_steps",
        b.eval_every_steps,
        f"must be a multiple of benchmark.window_steps ({b.window_steps}) so evals fall on window edges",
        f"use benchmark.eval_every_steps={b.window_steps * max(1, round(b.eval_every_steps / b.window_steps))}",
    )
    for key in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "seq_len"):
        value = getattr(m, key)
        _require(value > 0, f"benchmark.model.{key}", value, "must be > 0", "use a positive size")
    _require(
        m.d_model % m.n_heads == 0,
        "benchmark.model.n_heads",
        m.n_heads,
        f"must divide d_model={m.d_model}",
        "pick n_heads that divides d_model",
    )
    if m.kind == "moe":
        _require(
            m.n_experts >= 2,
            "benchmark.model.n_experts",
            m.n_experts,
            "must be >= 2",
            "use e.g. 8 experts",
        )
        _require(
            m.routing_groups >= 1 and b.global_batch % m.routing_groups == 0,
            "benchmark.model.routing_groups",
            m.routing_groups,
            f"must be >= 1 and divide global_batch={b.global_batch} (groups are whole sequences)",
            "use a divisor of the global batch, e.g. 8",
        )
        _require(
            1 <= m.moe_every <= m.n_layers,
            "benchmark.model.moe_every",
            m.moe_every,
            f"must be in [1, n_layers={m.n_layers}]",
            "use 2 for every other FFN",
        )
        for key in ("capacity_factor_train", "capacity_factor_eval"):
            _require(
                getattr(m, key) > 0,
                f"benchmark.model.{key}",
                getattr(m, key),
                "must be > 0",
                "use e.g. 1.25",
            )
        _require(
            0 <= m.jitter < 1,
            "benchmark.model.jitter",
            m.jitter,
            "must be in [0, 1)",
            "use 0 or e.g. 0.01",
        )
        _require(
            m.aux_loss_coef >= 0 and m.z_loss_coef >= 0,
            "benchmark.model.aux_loss_coef/z_loss_coef",
            f"{m.aux_loss_coef}/{m.z_loss_coef}",
            "must be >= 0",
            "use 0.01 and 0.001 (Switch, ST-MoE)",
        )
    _require(b.optim.decay_steps is None or b.optim.decay_steps > b.optim.lr_warmup_steps,
             "benchmark.optim.decay_steps", b.optim.decay_steps,
             f"must be past the warm-up ({b.optim.lr_warmup_steps} steps)",
             "omit it (the decay ends at max_steps) or give a later step")  # fmt: skip
    _require(
        b.optim.lr > 0,
        "benchmark.optim.lr",
        b.optim.lr,
        "must be > 0",
        "use a positive learning rate",
    )
    _require(  # your own training (framework=custom or external) names its own metric
        t.metric == "eval_loss" or cfg.framework.name in ("custom", "external"),
        "benchmark.target.metric",
        t.metric,
        "is not supported",
        "use eval_loss (nats per token)",
    )
    _require(
        math.isfinite(t.threshold),
        "benchmark.target.threshold",
        t.threshold,
        "must be finite",
        "give a finite threshold",
    )

    f = cfg.framework
    _require(
        not (b.name == "external" and f.name in ("torch", "jax")),
        "benchmark",
        b.name,
        "describes a loop joulebench does not run (harness.api.Measurement)",
        "pick a joulebench benchmark (e.g. benchmark=lm-dense-tiny) for framework=torch or jax",
    )
    _require(
        f.name != "custom" or bool(f.target),
        "framework.target",
        f.target,
        "is needed by framework=custom",
        "set framework.target=package.module:ClassName (your Workload class)",
    )
    _require(
        f.expert_parallel >= 0,
        "framework.expert_parallel",
        f.expert_parallel,
        "must be >= 0",
        "use 0 (automatic) or the ranks per expert group",
    )
    _require(
        f.mesh.data >= 1 and f.mesh.expert >= 1,
        "framework.mesh",
        f"{f.mesh.data}x{f.mesh.expert}",
        "must have axes >= 1",
        "use e.g. framework.mesh.data=2 framework.mesh.expert=4",
    )
    _require(
        b.global_batch % (f.mesh.data * f.mesh.expert) == 0,
        "benchmark.global_batch",
        b.global_batch,
        f"must divide over the {f.mesh.data * f.mesh.expert} devices of the mesh",
        "pick a batch that is a multiple of framework.mesh.data x framework.mesh.expert",
    )
    if m.kind == "moe":
        _require(
            m.n_experts % f.mesh.expert == 0,
            "benchmark.model.n_experts",
            m.n_experts,
            f"must be a multiple of framework.mesh.expert={f.mesh.expert}",
            "use an expert axis that divides the number of experts",
        )
    _require(
        f.device in ("auto", "cpu", "gpu", "tpu") or f.device.startswith("cuda"),
        "framework.device",
        f.device,
        "is unknown",
        "use auto, cpu, cuda or cuda:N (torch), or auto, cpu, gpu, tpu (jax)",
    )
    _require(
        f.threads is None or f.threads > 0,
        "framework.threads",
        f.threads,
        "must be > 0",
        "omit it or give a count",
    )

    mc = cfg.meter
    _require(
        mc.idle_seconds >= 0,
        "meter.idle_seconds",
        mc.idle_seconds,
        "must be >= 0",
        "use 0 to skip the idle baseline",
    )
    _require(
        math.isfinite(mc.watts) and mc.watts > 0,
        "meter.watts",
        mc.watts,
        "must be > 0 W",
        "give the simulated meter a positive power, e.g. meter.watts=100",
    )
    _require(
        mc.sample_hz is None or 0 < mc.sample_hz <= 1000,
        "meter.sample_hz",
        mc.sample_hz,
        "must be in (0, 1000], or null for each source's own rate",
        "leave it unset (NVML then polls 10x per counter tick), or use e.g. meter.sample_hz=50",
    )
    _require(
        mc.nvml.tick_s is None or 0 < mc.nvml.tick_s <= 1,
        "meter.nvml.tick_s",
        mc.nvml.tick_s,
        "must be in (0, 1] s, or null to detect it",
        "leave it unset: the counter's period is detected at start",
    )
    _require(
        mc.ptdaemon.settle_s >= 0,
        "meter.ptdaemon.settle_s",
        mc.ptdaemon.settle_s,
        "must be >= 0 s",
        "use power-dev's 10 s",
    )
    _require(
        mc.cpu.tdp_w > 0,
        "meter.cpu.tdp_w",
        mc.cpu.tdp_w,
        "must be > 0 W",
        "give the CPU's TDP in watts",
    )

    c = cfg.carbon
    _require(
        math.isfinite(c.pue) and c.pue >= 1.0,
        "carbon.pue",
        c.pue,
        "must be >= 1.0",
        "PUE is facility energy over IT energy; 1.0 means no overhead",
    )
    _require(
        c.intensity_g_per_kwh is None
        or (math.isfinite(c.intensity_g_per_kwh) and c.intensity_g_per_kwh >= 0),
        "carbon.intensity_g_per_kwh",
        c.intensity_g_per_kwh,
        "must be >= 0",
        "give grid intensity in gCO2e/kWh",
    )
    for key in ("supplier_g_per_kwh", "residual_mix_g_per_kwh"):
        value = getattr(c.market, key)
        _require(
            value is None or value >= 0,
            f"carbon.market.{key}",
            value,
            "must be >= 0",
            "give gCO2e/kWh",
        )
    covered = c.market.eac_covered_fraction
    _require(
        covered is None or 0 <= covered <= 1,
        "carbon.market.eac_covered_fraction",
        covered,
        "must be in [0, 1]",
        "give the share of energy matched by certificates",
    )
    if c.intensity_g_per_kwh is None:
        from harness.carbon.intensity import lookup

        lookup(c.region)  # an unknown region fails here, before any training
    _check_launcher(cfg)
    _check_submission(cfg)


def _check_launcher(cfg: JoulebenchConfig) -> None:
    lc = cfg.launcher
    _require(
        lc.nproc_per_node >= 1,
        "launcher.nproc_per_node",
        lc.nproc_per_node,
        "must be >= 1",
        "use the number of GPUs per node",
    )
    if lc.name == "torchrun":
        _require(
            cfg.framework.name == "torch",
            "launcher",
            lc.name,
            f"launches torch ranks, not framework={cfg.framework.name}",
            "for JAX start one process per host with framework.distributed.enabled=true",
        )
        _require(
            lc.nnodes == "1" or bool(lc.rdzv_endpoint),
            "launcher.nnodes",
            lc.nnodes,
            "needs a rendezvous endpoint when more than one node joins",
            "set launcher.rdzv_endpoint=<node0 host>:29500 on every node",
        )


def _check_submission(cfg: JoulebenchConfig) -> None:
    sub = cfg.submission
    from harness.submission.ruleset import available_rulesets

    known = available_rulesets()
    _require(sub.ruleset in known, "submission.ruleset", sub.ruleset,
             f"is not a ruleset in configs/ruleset ({', '.join(known)})", "set it to v1")  # fmt: skip
