"""joulebench harness: runner, meters, carbon, result files and the CLI.

Nothing here imports a training framework at module import time: torch and jax load only
when a workload or meter that needs them is built, so `validate` and `report` stay light.
"""

__version__ = "0.1.0"
