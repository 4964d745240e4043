"""PyTorch adapter: builds model, optimizer and step from the benchmark config.

On a GPU: bf16 autocast over fp32 master weights, fused SDPA attention, torch.compile of the
model, fused AdamW, pinned host batches copied without blocking, and no host sync inside a
step (the loss and MoE statistics stay on the device until the runner's window edge).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from harness.errors import WorkloadError
from workloads.base import WorkloadInfo, eval_sequences, model_facts, step_stats_from_rows
from workloads.capacity import knowledge_extra
from workloads.data import Batch, build_token_source, eval_batch_count
from workloads.flops import peak_flops_per_s
from workloads.moe_rules import routing_extra
from workloads.process_group import ProcessGroup
from workloads.torch import parallel
from workloads.torch.model import Transformer, lm_loss, training_loss


def _pick_device(requested: str, local_rank: int | None = None) -> torch.device:
    """The device to train on. A CUDA device always carries its index: torch.cuda.set_device,
    the UUID lookup and the memory counters all need one ("cuda" alone is refused by
    set_device)."""
    if local_rank is not None and requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)  # one GPU per rank under torchrun
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise WorkloadError(
            f"framework.device={requested} but torch sees no CUDA GPU.",
            "use framework.device=cpu or run on a machine with a GPU.",
        )
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise WorkloadError(
            f"framework.device={requested} is not a torch device ({exc}).",
            "use auto, cpu, cuda or cuda:N.",
        ) from exc
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        if not 0 <= index < torch.cuda.device_count():
            raise WorkloadError(
                f"framework.device={requested} but torch sees {torch.cuda.device_count()} GPU(s).",
                "pick an index that exists (cuda:0 is the first visible GPU).",
            )
        device = torch.device("cuda", index)
    return device


def claim_device(requested: str, local_rank: int | None = None) -> torch.device:
    """Pick the device and make it this process's current CUDA device (a GPU run)."""
    device = _pick_device(requested, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


_compiled_signature: tuple | None = None  # shapes of the model this process compiled last


def _shape_signature(bench) -> tuple:
    """What fixes the compiled graphs' shapes: the model definition and the batch."""
    return (repr(bench.model), bench.global_batch)


def compile_static(module: torch.nn.Module, signature: tuple) -> torch.nn.Module:
    """torch.compile with static shapes, one benchmark's graphs in the cache at a time.

    Dynamo recompiles a function for new input shapes, and by default the second time it
    does so with dynamic (symbolic) shapes: after two benchmarks in one process (a sweep, a
    benchmark script) every later run, even of the first benchmark again, would train with
    dynamic-shape kernels, and past the cache limit (8 graphs a function) in eager mode.
    So shapes are static, and the cache is cleared when the shapes change; runs of the same
    shapes (seeds of one benchmark) reuse the compiled graphs.
    """
    global _compiled_signature
    if _compiled_signature is not None and _compiled_signature != signature:
        torch._dynamo.reset()
    _compiled_signature = signature
    return torch.compile(module, dynamic=False)


def lr_at(step: int, optim, max_steps: int) -> float:
    """Linear warm-up then cosine decay to min_lr_ratio * lr at optim.decay_steps (None:
    max_steps), or constant."""
    max_steps = optim.decay_steps or max_steps
    if step < optim.lr_warmup_steps:
        return optim.lr * (step + 1) / optim.lr_warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    progress = min(1.0, (step - optim.lr_warmup_steps) / max(1, max_steps - optim.lr_warmup_steps))
    floor = optim.min_lr_ratio * optim.lr
    return floor + 0.5 * (optim.lr - floor) * (1.0 + math.cos(math.pi * progress))


class TorchWorkload:
    def __init__(self, bench, framework, seed: int):
        self.bench, self.seed = bench, seed
        topology = parallel.env_topology()
        self.device = claim_device(framework.device, topology and topology.local_rank)
        on_gpu = self.device.type == "cuda"
        self.group = parallel.TorchGroup(topology) if topology else ProcessGroup()
        self.world_size, self.rank = self.group.topology.world_size, self.group.topology.rank
        parallel.check_divisible(bench, self.world_size)
        if framework.threads:
            torch.set_num_threads(framework.threads)
        self.precision = (
            framework.precision if framework.precision != "auto" else ("bf16" if on_gpu else "fp32")
        )
        n_eval = eval_batch_count(bench)
        self.data = build_token_source(bench.data, bench.model, bench.global_batch * n_eval)
        self.rng = np.random.default_rng([seed, bench.data.seed])
        self.eval_batches = self.data.eval_set(bench.global_batch, n_eval)

        torch.manual_seed(seed)  # every rank builds the full model: the same weights as one process
        self.model = Transformer(bench.model).to(self.device)
        self.sharded: list[str] = []  # expert shards (expert parallel MoE)
        self.experts = None  # how the experts are spread over the ranks
        module = self.model
        if self.group.distributed:
            if bench.model.kind == "moe":
                self.experts = parallel.expert_layout(
                    self.group.topology, bench.model.n_experts, framework.expert_parallel
                )
                self.sharded = parallel.shard_experts(self.model, self.experts, self.world_size)
            module = parallel.wrap_ddp(self.model, self.device, self.sharded)
        if on_gpu:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.compiled = framework.compile == "on" or (framework.compile == "auto" and on_gpu)
        self.forward = compile_static(module, _shape_signature(bench)) if self.compiled else module
        self.optimizer = self._make_optimizer()
        self.step_index = 0
        self.info = self._info()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.bench.optim
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(
            groups, lr=o.lr, betas=(o.beta1, o.beta2), fused=self.device.type == "cuda"
        )

    def _info(self) -> WorkloadInfo:
        local = sum(p.numel() for p in self.model.parameters())
        shards = dict(self.model.named_parameters())
        copies = self.experts.size if self.sharded else 1
        full = local + (copies - 1) * sum(shards[n].numel() for n in self.sharded)
        facts = model_facts(self.bench, full)
        on_gpu = self.device.type == "cuda"
        name = torch.cuda.get_device_name(self.device) if on_gpu else _cpu_name()
        peak = peak_flops_per_s(name) if on_gpu else None
        extra = {**knowledge_extra(self.bench, facts["params_total"]), **routing_extra(self.bench)}
        extra["train_sequences"] = self.data.train_sequences
        extra["eval_sequences"] = eval_sequences(self.bench)
        if on_gpu:
            index = self.device.index
            extra["cuda_device_indices"] = [index]
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            if uuid is not None:  # the meter finds this GPU in NVML by UUID, not by index
                extra["cuda_device_uuids"] = [str(uuid)]
        if self.group.distributed:
            extra.update(
                world_size=self.world_size,
                data_parallel="DDP",
                expert_parallel=self.experts.size if self.experts else 1,
                expert_replicas=self.experts.replicas if self.experts else self.world_size,
            )
        return WorkloadInfo(
            framework="torch",
            framework_version=torch.__version__,
            **facts,
            precision=self.precision,
            compiled=self.compiled,
            device_kind="gpu" if on_gpu else "cpu",
            device_name=name,
            device_count=self.world_size,  # one device per rank
            peak_flops_per_s=peak * self.world_size if peak else None,
            loss_floor_nats=self.data.entropy_floor_nats,
            extra=extra,
        )

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous slice of the global batch, on the device."""
        pin = self.device.type == "cuda"
        b = batch.inputs_BT.shape[0] // self.world_size
        rows = slice(self.rank * b, (self.rank + 1) * b)
        x, y = torch.from_numpy(batch.inputs_BT[rows]), torch.from_numpy(batch.targets_BT[rows])
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=pin), y.to(self.device, non_blocking=pin)

    def next_batch(self) -> Batch:
        return self.data.train_batch(self.bench.global_batch, self.rng)

    def train_step(self, batch: Batch) -> torch.Tensor:
        for group in self.optimizer.param_groups:  # a host float: no device sync
            group["lr"] = lr_at(self.step_index, self.bench.optim, self.bench.max_steps)
        x_BT, y_BT = self._to_device(batch)
        with self._autocast():
            logits_BTV, moe_stats = self.forward(x_BT)
            loss, stats = training_loss(logits_BTV, y_BT, moe_stats)
        loss.backward()
        if self.group.distributed:
            parallel.finish_gradients(
                self.model, self.sharded, self.experts, self.world_size, self.bench.optim.grad_clip
            )
        elif self.bench.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.bench.optim.grad_clip, foreach=True
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1
        return stats

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def read_step_stats(self, handles: list[torch.Tensor]) -> list[dict]:
        """Per-step statistics from train_step handles (averaged over ranks), in one device-to-host copy."""
        if not handles:
            return []
        stats = torch.stack(handles).float()
        if self.group.distributed:
            torch.distributed.all_reduce(stats)
            stats /= self.world_size
        return step_stats_from_rows(stats.cpu().tolist())

    def peak_memory_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device)

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for batch in self.eval_batches:
            x_BT, y_BT = self._to_device(batch)
            with self._autocast():
                logits_BTV, _ = self.forward(x_BT)
                total += lm_loss(logits_BTV, y_BT)
        self.model.train()
        if self.group.distributed:  # equal slices: the mean of rank means is the global mean
            torch.distributed.all_reduce(total)
            total /= self.world_size
        return float(total.item()) / len(self.eval_batches)

    def warmup(self, steps: int) -> None:
        """Compile and warm caches on throwaway batches, then restore the initial weights."""
        if steps <= 0:
            return
        initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        warm_rng = np.random.default_rng([self.seed, self.bench.data.seed, 99])
        for _ in range(steps):
            self.train_step(self.data.train_batch(self.bench.global_batch, warm_rng))
        self.evaluate()  # compiles the eval graph too
        self.sync()
        self.model.load_state_dict(initial)
        self.optimizer = self._make_optimizer()
        self.step_index = 0


def _cpu_name() -> str:
    from workloads.device import cpu_model_name

    return cpu_model_name()
