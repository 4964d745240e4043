"""Data and expert parallelism for the torch workloads under torchrun (or SLURM via submitit).

- Every rank builds the full model from the same seed, so the weights equal a one-process run's.
- Data parallel: each rank takes its contiguous slice of the same global batch; replicated
  parameters are averaged by DDP.
- Expert parallel (MoE): the experts are spread over expert groups of `size` ranks (all of them
  when the experts allow; framework.expert_parallel), each rank keeping E / size. The dispatched
  (E, G, C, D) buffer is exchanged within the group with two all-to-alls of equal splits (no
  host sync for split sizes), because capacity is fixed per routing group
  (workloads/moe_rules.py). An expert's gradient collects its group's tokens through the
  all-to-all's backward: it is summed over the groups holding the same experts and divided by
  the world size, which is DDP's average of the per-rank mean losses.
- Gradient clipping uses the global norm: replicated gradients once, expert shards summed
  over ranks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from harness.errors import WorkloadError
from workloads.process_group import ProcessGroup, Topology


def env_topology() -> Topology | None:
    """The torchrun (or submitit-exported) environment, or None outside a multi-process launch."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
    local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    if "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    elif "SLURM_JOB_ID" in env:
        launcher = "slurm"
    else:
        launcher = "env"
    return Topology(
        rank=rank,
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", rank % local_world)),
        local_world_size=local_world,
        node_rank=int(env.get("GROUP_RANK", rank // local_world)),
        nnodes=max(1, world // local_world),
        launcher=launcher,
        backend="nccl" if torch.cuda.is_available() else "gloo",
    )


class TorchGroup(ProcessGroup):
    """torch.distributed: NCCL (GPU) or gloo (CPU) for training, gloo for the harness's host
    collectives so they never queue behind GPU work."""

    def __init__(self, topology: Topology):
        super().__init__(topology)
        if not dist.is_initialized():
            dist.init_process_group(topology.backend)
        self.host_group = dist.new_group(backend="gloo") if topology.backend == "nccl" else None

    def barrier(self) -> None:
        dist.barrier(group=self.host_group)

    def all_gather_object(self, obj):
        out = [None] * self.topology.world_size
        dist.all_gather_object(out, obj, group=self.host_group)
        return out

    def gather_object(self, obj):
        out = [None] * self.topology.world_size if self.is_primary else None
        dist.gather_object(obj, out, dst=0, group=self.host_group)
        return out

    def agree(self, flags: list[bool], totals: list[float]) -> tuple[list[bool], list[float]]:
        t = torch.tensor(
            [float(bool(f)) for f in flags] + [float(x) for x in totals], dtype=torch.float64
        )
        dist.all_reduce(t, group=self.host_group)  # a sum: a flag is set anywhere when > 0
        values = t.tolist()
        return [v > 0 for v in values[: len(flags)]], values[len(flags) :]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Differentiable all-to-all of equal chunks along dim 0, within `group`."""
    try:
        from torch.distributed._functional_collectives import all_to_all_single_autograd
    except ImportError:  # older torch
        from torch.distributed.nn.functional import all_to_all_single

        return all_to_all_single(torch.empty_like(x), x, group=group)
    return all_to_all_single_autograd(x, None, None, group)


@dataclass
class ExpertLayout:
    """How the experts are spread: over `size` consecutive ranks (an expert group, which
    exchanges tokens), repeated `replicas` times across the world (data parallel over expert
    groups; ranks holding the same experts average their gradients)."""

    size: int
    index: int  # this rank's place in its expert group
    replicas: int
    group: object  # this rank's expert group (all-to-all, shard norms)
    replica_group: object | None  # the ranks holding the same experts, if more than one


def expert_layout(topology: Topology, n_experts: int, requested: int) -> ExpertLayout:
    """`requested` ranks per expert group; 0 takes the most that divide both the experts and
    the world size (every rank in one group when it can)."""
    W, r = topology.world_size, topology.rank
    size = requested or math.gcd(n_experts, W)
    if W % size or n_experts % size:
        raise WorkloadError(
            f"framework.expert_parallel={size} must divide both the world size ({W}) and "
            f"benchmark.model.n_experts ({n_experts}).",
            "use framework.expert_parallel=0 (automatic) or a common divisor.",
        )
    # every rank creates every group, in the same order, as torch.distributed requires
    groups = [dist.new_group(list(range(k * size, (k + 1) * size))) for k in range(W // size)]
    replica_groups = (
        [dist.new_group(list(range(i, W, size))) for i in range(size)] if size < W else None
    )
    return ExpertLayout(
        size, r % size, W // size, groups[r // size], replica_groups and replica_groups[r % size]
    )


class ExpertParallel:
    """Runs a rank's experts on its expert group's tokens for them, and sends the outputs back."""

    def __init__(self, layout: ExpertLayout):
        self.layout = layout

    def run(self, x_EGCD: torch.Tensor, experts) -> torch.Tensor:
        E, G, C, D = x_EGCD.shape
        W = self.layout.size
        El = E // W
        # chunk w of the send buffer holds my tokens for rank w's experts; chunk w of what
        # arrives holds rank w's tokens for mine
        recv_WElGCD = _all_to_all(x_EGCD, self.layout.group).view(W, El, G, C, D)
        x_ElXD = recv_WElGCD.transpose(0, 1).reshape(El, W * G * C, D)
        out_WElGCD = experts(x_ElXD).view(El, W, G, C, D).transpose(0, 1).contiguous()
        return _all_to_all(out_WElGCD.view(E, G, C, D), self.layout.group).view(E, G, C, D)


def shard_experts(model: nn.Module, layout: ExpertLayout, world_size: int) -> list[str]:
    """Keep this rank's E / size experts of every MoE layer; return the sharded parameter
    names (none when every rank keeps every expert: DDP then treats them like the rest)."""
    from workloads.torch.moe import SwitchFFN

    names = []
    for name, module in model.named_modules():
        if not isinstance(module, SwitchFFN):
            continue
        module.routing_groups //= world_size  # this rank's share of the batch's groups
        if layout.size == 1:
            continue
        El, i = module.n_experts // layout.size, layout.index
        for pname in ("w_in_EDF", "w_out_EFD"):
            full = getattr(module, pname)
            setattr(module, pname, nn.Parameter(full.data[i * El : (i + 1) * El].clone()))
            names.append(f"{name}.{pname}")
        module.expert_parallel = ExpertParallel(layout)
    return names


def check_divisible(bench, world_size: int) -> None:
    m = bench.model
    rules = [(bench.global_batch, "benchmark.global_batch")]
    if m.kind == "moe":
        rules.append((m.routing_groups, "benchmark.model.routing_groups"))
    for value, key in rules:
        if value % world_size:
            raise WorkloadError(
                f"{key}={value} does not divide over {world_size} ranks.",
                f"launch a world size that divides {value} (or change {key}).",
            )


def wrap_ddp(model: nn.Module, device: torch.device, ignore: list[str]) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    if ignore:  # expert shards differ per rank: DDP must not average them
        DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def finish_gradients(
    model: nn.Module,
    sharded: list[str],
    layout: ExpertLayout | None,
    world_size: int,
    max_norm: float,
) -> None:
    """Expert-shard gradients to the gradient of the mean loss, then clip by the global norm
    (no host sync). A shard's gradient holds its expert group's tokens (the all-to-all's
    backward): summed over the replicas holding the same experts, divided by the world size."""
    params = dict(model.named_parameters())
    shard = [params[n].grad for n in sharded if params[n].grad is not None]
    replicated = [p.grad for n, p in params.items() if n not in set(sharded) and p.grad is not None]
    if shard:
        if layout is not None and layout.replica_group is not None:
            for g in shard:
                dist.all_reduce(g, group=layout.replica_group)
        torch._foreach_div_(shard, world_size)
    if max_norm <= 0:
        return
    device = (replicated or shard)[0].device
    zero = torch.zeros((), device=device)
    sq_rep = sum((g.float().pow(2).sum() for g in replicated), zero)
    sq_shard = sum((g.float().pow(2).sum() for g in shard), zero.clone())
    if shard:  # each distinct shard once: summed over one expert group
        dist.all_reduce(sq_shard, group=layout.group)
    coef = (max_norm / ((sq_rep + sq_shard).sqrt() + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(replicated + shard, coef)
