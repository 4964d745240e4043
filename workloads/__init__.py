"""Training workloads: framework-neutral data and FLOP maths, and framework adapters.

An adapter (see `workloads.base.Workload`) exposes train_step, sync, evaluate, warmup and
info. The runner talks to nothing else, so torch and JAX workloads are interchangeable.
"""
