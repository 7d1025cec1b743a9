#!/usr/bin/env bash
# Fill ./.whl, the wheelhouse benchmarks/gpu_check.sh reads on a GPU machine that reaches no package index (the device
# tool carries at most 64 MiB a call: name .whl in its `carry`). Run it on a machine that reaches the index.
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]          (default 3.12: the GPU image's python3)
# It holds XTuner's wheel (2 MB), whose InternLM2 modelling code the random-weight checkpoints ship. The tool envs
# themselves do not fit: lmdeploy 0.18.0's wheel alone is 107 MB (its TurboMind library links CUDA 12's runtime and
# cuBLAS, more wheels of hundreds of MB), so on such a machine gpu_check reports those steps as skipped, with why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYV="${1:-3.12}"
EXCLUDE="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl xtuner==0.2.0
du -sh .whl && ls .whl
