#!/usr/bin/env bash
# The three wheels the GPU image lacks, in versions that work together, into .whl/ (git-ignored):
#   hydra-core 1.3.8, omegaconf 2.3.x, antlr4-python3-runtime 4.9.3 (all pure Python).
# hydra-core 1.3.8 needs antlr4 4.9.* and omegaconf < 2.4: the obvious
# `pip download hydra-core omegaconf antlr4-python3-runtime` picks antlr4 4.13.2 and omegaconf
# 2.4.0, and every config load then fails with "Could not deserialize ATN with version 3
# (expected 4)". antlr4 4.9.3 is published only as a source distribution, so its wheel is built
# here with `pip wheel --no-deps`. Run from the repository root:
#
#   bash scripts/device_wheels.sh        # then carry .whl in the device call (gpu_check.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
rm -rf "$dest" && mkdir -p "$dest"
plat=(--only-binary=:all: --python-version 3.12 --implementation py --platform any)
python3 -m pip download -q --no-deps "${plat[@]}" -d "$dest" "hydra-core==1.3.8" "omegaconf>=2.3,<2.4"
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dest" "antlr4-python3-runtime==4.9.3" 2>/dev/null \
  || python3 -m pip wheel -q --no-deps -w "$dest" "antlr4-python3-runtime==4.9.3"
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
ls "$dest"
n=$(ls "$dest"/*.whl | wc -l)
if [ "$n" -ne 3 ]; then
  echo "device_wheels: expected 3 wheels in $dest, found $n" >&2
  exit 1
fi
