"""The torch adapter's GPU start-up path on a CPU machine: CUDA patched at torch's C seam.

Every single-process GPU run used to die in `torch.cuda.set_device(torch.device("cuda"))`
("Expected a torch.device with a specified index"); torchrun runs, which carry a local rank,
did not. Here torch's own Python code for set_device runs; only the C call behind it is faked.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.errors import WorkloadError  # noqa: E402
from workloads.torch import adapter  # noqa: E402


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch sees two CUDA GPUs, the current one being 1; set_device reaches the fake C call."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch._C, "_cuda_setDevice", chosen.append, raising=False)
    return chosen


@pytest.mark.parametrize(
    ("requested", "local_rank", "index"),
    [("auto", None, 1), ("cuda", None, 1), ("cuda:0", None, 0), ("auto", 0, 0), ("cuda", 1, 1)],
)
def test_a_cuda_device_always_has_an_index_and_becomes_current(
    two_fake_gpus, requested, local_rank, index
):
    device = adapter.claim_device(requested, local_rank)
    assert device == torch.device("cuda", index)
    assert two_fake_gpus == [index]  # torch.cuda.set_device accepted it and set that GPU


def test_a_gpu_index_that_does_not_exist_is_one_line(two_fake_gpus):
    with pytest.raises(WorkloadError, match="sees 2 GPU"):
        adapter.claim_device("cuda:5")
    assert two_fake_gpus == []


def test_cpu_is_never_made_current(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert adapter.claim_device("auto") == torch.device("cpu")
    with pytest.raises(WorkloadError, match="no CUDA GPU"):
        adapter.claim_device("cuda")


def test_benchmarks_in_one_process_train_with_static_shapes(monkeypatch):
    """Two shapes, then the first again (a benchmark script, a sweep): every graph Dynamo hands
    the compiler has concrete shapes, and the seeds of one shape reuse the first's graphs.
    torch.compile's own default turns the second new shape into symbolic (dynamic) kernels."""
    from harness.config import BenchmarkConfig, FrameworkConfig, ModelConfig

    graphs: list[bool] = []  # per compiled graph: did any input have a symbolic size?

    def recording_backend(gm, example_inputs):
        symbolic = any(
            isinstance(s, torch.SymInt)
            for x in example_inputs
            for s in (x.shape if isinstance(x, torch.Tensor) else [x])
        )
        graphs.append(symbolic)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda m, **kw: real_compile(m, backend=recording_backend, **kw)
    )
    monkeypatch.setattr(adapter, "_compiled_signature", None)
    torch._dynamo.reset()

    def bench(d_model: int, seq_len: int) -> BenchmarkConfig:
        b = BenchmarkConfig(name=f"b{d_model}", max_steps=2, global_batch=2, eval_batches=1)
        b.model = ModelConfig(
            kind="dense", vocab_size=32, d_model=d_model, n_layers=1, n_heads=2, d_ff=32,
            seq_len=seq_len,
        )  # fmt: skip
        b.data.train_tokens, b.data.eval_tokens = 4096, 512
        return b

    framework = FrameworkConfig(device="cpu", compile="on")
    for d_model, seq_len in [(16, 8), (32, 16), (16, 8), (16, 8)]:
        workload = adapter.TorchWorkload(bench(d_model, seq_len), framework, seed=0)
        workload.train_step(workload.next_batch())
        workload.evaluate()
    assert graphs and not any(graphs)
    # a train and an eval graph for (16, 8), for (32, 16) after a reset, for (16, 8) again
    # after a reset; the fourth workload, of the third's shapes, reused the third's graphs
    assert len(graphs) == 6
