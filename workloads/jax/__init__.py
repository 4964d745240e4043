"""JAX workloads. Importing this package imports jax."""
