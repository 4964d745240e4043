"""PyTorch workloads. Importing this package imports torch."""
