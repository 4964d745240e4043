"""Examples of metering your own training with joulebench (see the README's "Measure your own
training"). Run them from the repository root: `python -m examples.numpy_least_squares`."""
