"""The CPU rehearsal of scripts/gpu_check.sh: every Python process it starts imports this
(its folder is put first on PYTHONPATH), and with JB_FAKE_NVML=1 `import pynvml` then gives
the fake NVIDIA H200 of tests/rehearsal_nvml.py. Nothing outside the rehearsal loads it."""

import os

if os.environ.get("JB_FAKE_NVML") == "1":
    from tests.rehearsal_nvml import install

    install()
