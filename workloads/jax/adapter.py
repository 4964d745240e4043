"""JAX adapter: params and optimizer state on a (data, expert) mesh, a jitted train step with
donated state, and the same framework-neutral batches as the torch side.

No host round trip inside a step: the learning-rate schedule lives in optax's step count,
the dropout-free model needs no host randomness (the router-jitter key is carried in state),
and the step's statistics stay on the device until the runner's window edge.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from harness.errors import WorkloadError
from workloads.base import WorkloadInfo, eval_sequences, model_facts, step_stats_from_rows
from workloads.capacity import knowledge_extra
from workloads.data import Batch, build_token_source, eval_batch_count
from workloads.flops import peak_flops_per_s
from workloads.jax import model as jm
from workloads.jax.distributed import JaxGroup, initialize
from workloads.moe_rules import routing_extra
from workloads.process_group import ProcessGroup


def lr_schedule(optim, max_steps: int):
    """The torch side's lr_at as an optax schedule of the update count (no host input per step)."""
    max_steps = optim.decay_steps or max_steps

    def schedule(count):
        step = count.astype(jnp.float32)
        warm = optim.lr * (step + 1.0) / max(1, optim.lr_warmup_steps)
        if optim.schedule == "constant":
            decayed = jnp.float32(optim.lr)
        else:
            progress = jnp.clip(
                (step - optim.lr_warmup_steps) / max(1, max_steps - optim.lr_warmup_steps), 0.0, 1.0
            )
            floor = optim.min_lr_ratio * optim.lr
            decayed = floor + 0.5 * (optim.lr - floor) * (1.0 + jnp.cos(math.pi * progress))
        return jnp.where(step < optim.lr_warmup_steps, warm, decayed)

    return schedule


def _pick_devices(framework) -> list:
    want = framework.mesh.data * framework.mesh.expert
    platform = None if framework.device == "auto" else framework.device
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        raise WorkloadError(
            f"framework.device={framework.device}: JAX finds no such device ({exc}).",
            "use framework.device=auto or cpu.",
        ) from exc
    if len(devices) < want:
        raise WorkloadError(
            f"the mesh {framework.mesh.data}x{framework.mesh.expert} needs {want} devices; "
            f"JAX sees {len(devices)} {devices[0].platform} device(s).",
            "shrink framework.mesh.data / framework.mesh.expert.",
        )
    return devices[:want]


class JaxWorkload:
    def __init__(self, bench, framework, seed: int):
        topology = initialize(framework.distributed)
        self.group = JaxGroup(topology) if topology else ProcessGroup()
        self.bench, self.seed = bench, seed
        m = bench.model
        devices = _pick_devices(framework)
        self.platform = devices[0].platform
        self.mesh = Mesh(
            np.array(devices).reshape(framework.mesh.data, framework.mesh.expert),
            ("data", "expert"),
        )
        on_accel = self.platform in ("gpu", "tpu")
        self.precision = (
            framework.precision
            if framework.precision != "auto"
            else ("bf16" if on_accel else "fp32")
        )
        self.dtype = jnp.bfloat16 if self.precision == "bf16" else jnp.float32
        # JAX's default attention is XLA's unfused one; on NVIDIA GPUs in bf16 ask for cuDNN's
        # fused flash attention (the counterpart of torch's SDPA flash kernel).
        self.attn_impl = "cudnn" if self.platform == "gpu" and self.precision == "bf16" else None
        n_eval = eval_batch_count(bench)
        self.data = build_token_source(bench.data, m, bench.global_batch * n_eval)
        self.rng = np.random.default_rng([seed, bench.data.seed])
        self.batch_sharding = NamedSharding(self.mesh, P(("data", "expert")))
        self.eval_batches = [self._put(b) for b in self.data.eval_set(bench.global_batch, n_eval)]

        o = bench.optim
        adamw = optax.adamw(
            lr_schedule(o, bench.max_steps),
            b1=o.beta1,
            b2=o.beta2,
            eps=1e-8,
            weight_decay=o.weight_decay,
            mask=lambda p: jax.tree.map(lambda a: a.ndim >= 2, p),
        )
        self.optimizer = (
            optax.chain(optax.clip_by_global_norm(o.grad_clip), adamw) if o.grad_clip > 0 else adamw
        )
        # initialised inside jit straight into their shardings: works across processes too
        params = jax.jit(
            lambda: jm.init_params(m, jax.random.PRNGKey(seed)),
            out_shardings=self._param_shardings(m),
        )()
        self.state = (params, jax.jit(self.optimizer.init)(params), jax.random.PRNGKey(seed + 1))
        self._initial_state = None
        # the dispatched (G, E, C, D) buffer: groups along the data axis, experts along the
        # expert axis, so XLA exchanges tokens between the two with an all-to-all
        group_axis = "data" if m.routing_groups % framework.mesh.data == 0 else None
        expert_sharding = NamedSharding(self.mesh, P(group_axis, "expert", None, None))

        def loss_fn(params, x_BT, y_BT, key, training):
            logits, moe_stats = jm.forward(
                params,
                x_BT,
                m,
                training=training,
                key=key,
                dtype=self.dtype,
                expert_sharding=expert_sharding,
                attn_impl=self.attn_impl,
            )
            return jm.training_loss(logits, y_BT, moe_stats)

        def train_step(state, x_BT, y_BT):
            params, opt_state, key = state
            key, step_key = jax.random.split(key)
            (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, x_BT, y_BT, step_key, True
            )
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), stats

        def eval_step(params, x_BT, y_BT):
            logits, _ = jm.forward(
                params,
                x_BT,
                m,
                training=False,
                dtype=self.dtype,
                expert_sharding=expert_sharding,
                attn_impl=self.attn_impl,
            )
            return jm.lm_loss(logits, y_BT)

        self._train_step = jax.jit(train_step, donate_argnums=(0,))
        self._eval_step = jax.jit(eval_step)
        self.info = self._info(devices)

    def _param_shardings(self, m):
        """Experts split over the expert axis; everything else replicated."""
        replicated = NamedSharding(self.mesh, P())
        experts = NamedSharding(self.mesh, P("expert", None, None))
        shapes = jax.eval_shape(lambda: jm.init_params(m, jax.random.PRNGKey(0)))
        return jax.tree_util.tree_map_with_path(
            lambda path, _: (
                experts if str(path[-1]).strip("[]'") in ("w_in_EDF", "w_out_EFD") else replicated
            ),
            shapes,
        )

    def _info(self, devices) -> WorkloadInfo:
        facts = model_facts(
            self.bench, sum(int(np.prod(a.shape)) for a in jax.tree.leaves(self.state[0]))
        )
        if self.platform == "cpu":
            from workloads.device import cpu_model_name

            name, peak = cpu_model_name(), None
        else:
            name = devices[0].device_kind
            one = peak_flops_per_s(name)
            peak = one * len(devices) if one else None
        return WorkloadInfo(
            framework="jax",
            framework_version=jax.__version__,
            **facts,
            precision=self.precision,
            compiled=True,
            device_kind=self.platform,
            device_name=name,
            device_count=len(devices),
            peak_flops_per_s=peak,
            loss_floor_nats=self.data.entropy_floor_nats,
            extra={
                "mesh": dict(self.mesh.shape),
                "process_count": jax.process_count(),
                "attention": self.attn_impl or "xla",
                **knowledge_extra(self.bench, facts["params_total"]),
                **routing_extra(self.bench),
                "train_sequences": self.data.train_sequences,
                "eval_sequences": eval_sequences(self.bench),
                **(
                    {
                        "cuda_device_indices": [
                            d.local_hardware_id
                            for d in devices
                            if d.process_index == jax.process_index()
                        ]
                    }
                    if self.platform == "gpu"
                    else {}
                ),
            },
        )

    def _put(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """The global batch as a sharded array; each process fills only its own devices' rows
        (every process draws the same global batch from the same seed)."""

        def put(rows: np.ndarray) -> jax.Array:
            rows = rows.astype(np.int32)
            return jax.make_array_from_callback(rows.shape, self.batch_sharding, lambda i: rows[i])

        return put(batch.inputs_BT), put(batch.targets_BT)

    def next_batch(self) -> Batch:
        return self.data.train_batch(self.bench.global_batch, self.rng)

    def train_step(self, batch: Batch) -> jax.Array:
        self.state, stats = self._train_step(self.state, *self._put(batch))
        return stats

    def sync(self) -> None:
        jax.block_until_ready(self.state)

    def read_step_stats(self, handles: list[jax.Array]) -> list[dict]:
        """Per-step statistics from train_step handles, in one device-to-host copy."""
        return (
            step_stats_from_rows(np.asarray(jnp.stack(handles), dtype=np.float64).tolist())
            if handles
            else []
        )

    def evaluate(self) -> float:
        params = self.state[0]
        total = sum(self._eval_step(params, x, y) for x, y in self.eval_batches)
        return float(total) / len(self.eval_batches)

    def peak_memory_bytes(self) -> int | None:
        stats = jax.local_devices()[0].memory_stats() if self.platform != "cpu" else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    def warmup(self, steps: int) -> None:
        """Compile the train and eval steps on throwaway batches, then restore the initial state."""
        if steps <= 0:
            return
        initial = jax.tree.map(jnp.copy, self.state)  # the step donates (invalidates) its input
        warm_rng = np.random.default_rng([self.seed, self.bench.data.seed, 99])
        for _ in range(steps):
            self.train_step(self.data.train_batch(self.bench.global_batch, warm_rng))
        self.evaluate()
        self.sync()
        self.state = initial
