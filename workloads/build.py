"""Pick and build the framework adapter a config asks for. Frameworks import lazily."""

from __future__ import annotations

import importlib

from harness.errors import WorkloadError

# framework name -> (adapter module, adapter class, what to install when it does not import)
ADAPTERS = {
    "torch": (
        "workloads.torch.adapter",
        "TorchWorkload",
        'pip install "torch>=2.4" (or pip install -e ".[torch]")',
    ),
    "jax": ("workloads.jax.adapter", "JaxWorkload", 'pip install -e ".[jax]" (jax and optax)'),
}


def build_workload(bench, framework, seed: int):
    if framework.name == "custom":
        from workloads.custom import build_custom

        return build_custom(bench, framework, seed)
    if framework.name not in ADAPTERS:
        raise WorkloadError(
            f"framework={framework.name} is not available.", f"use one of: {', '.join(ADAPTERS)}."
        )
    module_name, class_name, install = ADAPTERS[framework.name]
    try:
        adapter = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise WorkloadError(
            f"framework={framework.name} does not import here ({exc}).", f"install it: {install}."
        ) from exc
    return adapter(bench, framework, seed)
