"""Pick and build the framework adapter a config asks for. Frameworks import lazily."""

from __future__ import annotations

from harness.errors import WorkloadError


def build_workload(bench, framework, seed: int):
    if framework.name == "torch":
        try:
            from workloads.torch.adapter import TorchWorkload
        except ImportError as exc:
            raise WorkloadError(
                f"framework=torch needs PyTorch, which does not import here ({exc}).",
                'install it: pip install "torch>=2.4" (or pip install -e ".[torch]").',
            ) from exc
        return TorchWorkload(bench, framework, seed)
    if framework.name == "jax":
        try:
            from workloads.jax.adapter import JaxWorkload
        except ImportError as exc:
            raise WorkloadError(
                f"framework=jax needs JAX and optax, which do not import here ({exc}).",
                'install them: pip install -e ".[jax]".',
            ) from exc
        return JaxWorkload(bench, framework, seed)
    raise WorkloadError(
        f"framework={framework.name} is not available.", "use framework=torch or jax."
    )
