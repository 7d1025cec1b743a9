#!/usr/bin/env bash
# One command for a fresh GPU machine: set up from wheels only, then run benchmarks/gpu_check.py within a budget.
#
#   bash benchmarks/gpu_check.sh [BUDGET_S] [gpu_check.py options…]      e.g.  bash benchmarks/gpu_check.sh 780
#
# Results go to $OUT (the device tool's folder) or ./gpu-check-out: results.json, results.md, log.txt, setup.json;
# each step's state goes to $CAMP_GPU_STATE (default /tmp/camp-gpu-check/state) and the run folders (configs, logs,
# checkpoints) to /tmp/camp-gpu-check/work, so that $OUT holds only the few files the device tool brings back. BUDGET_S counts from this script's start (default 540: one device call is 600 s at most).
#
# Setup, minimised and timed (setup.json; gpu_check.py reports it apart from the measurements):
#   * wheels only (PIP_ONLY_BINARY=:all:): never a source build;
#   * sources: the package index when pip reaches it, plus ./.whl when present (a wheelhouse carried to a machine
#     that reaches no index: benchmarks/gpu_wheels.sh fills it); without an index, PIP_NO_INDEX=1;
#   * the machine's own CUDA torch when its python3 has one (CAMP_TORCH=system: venvs see the system packages and
#     install no torch line — camp.runtime.envs.torch_requirement), else camp's pinned torch for CUDA;
#   * the check's own python is a venv that sees the machine python's packages and adds only the modules they
#     lack (environments/gpu-check.txt); the tool envs (lmdeploy, xtuner, opencompass) are built by gpu_check.py itself,
#     in parallel, while the probe and the first checkpoint build run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T0=$(date +%s.%N)
BUDGET=540
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then BUDGET=$1; shift; fi
OUT="${OUT:-$ROOT/gpu-check-out}"
STATE="${CAMP_GPU_STATE:-/tmp/camp-gpu-check/state}"
mkdir -p "$OUT" "$STATE"
PY="${CAMP_CHECK_PYTHON:-python3}"
export PIP_ONLY_BINARY=:all: PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PIP_NO_INPUT=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CAMP_HOME="${CAMP_HOME:-/tmp/camp-gpu-check/home}"
say() { echo "[gpu_check.sh $(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
mark() { python3 -c "import time;print(round(time.time()-$T0,1))"; }

# ---- where wheels come from
INDEX=no
if timeout 15 "$PY" -m pip index versions pip >/dev/null 2>&1; then INDEX=yes; fi
if [[ -d "$ROOT/.whl" ]]; then export PIP_FIND_LINKS="$ROOT/.whl"; fi
if [[ $INDEX == no ]]; then export PIP_NO_INDEX=1; fi
say "package index reachable: $INDEX; wheelhouse: ${PIP_FIND_LINKS:-none}"

# ---- torch: the machine's own when it works with CUDA
TORCH=$("$PY" -c "import torch; print(torch.__version__ if torch.cuda.is_available() else '')" 2>/dev/null || true)
if [[ -n "$TORCH" ]]; then export CAMP_TORCH=system; fi
say "machine python: $("$PY" --version 2>&1); CUDA torch: ${TORCH:-none} (CAMP_TORCH=${CAMP_TORCH:-camp pins})"

# ---- the check's python: a venv that also sees the machine python's packages (its CUDA torch), adding only the
# modules it lacks (CAMP_CHECK_PYTHON: use that python as it is, e.g. camp's .venv for a CPU rehearsal)
if [[ -n "${CAMP_CHECK_PYTHON:-}" ]]; then
  VPY="$CAMP_CHECK_PYTHON"
else
  VENV=/tmp/camp-gpu-check/venv
  "$PY" -m venv "$VENV"  # kept: a rerun on a warm machine reuses it
  "$PY" - "$VENV" <<'EOF'
import pathlib, sys
dirs = [d for d in sys.path if pathlib.Path(d).name in ("site-packages", "dist-packages") and pathlib.Path(d).is_dir()]
for sp in pathlib.Path(sys.argv[1]).glob("lib/python*/site-packages"):
    (sp / "camp-machine-packages.pth").write_text("".join(d + "\n" for d in dirs))
EOF
  VPY="$VENV/bin/python"
fi
# one process, find_spec only (importing torch to see that it is there costs seconds)
read -r -a MISSING <<< "$("$VPY" - environments/gpu-check.txt <<'EOF'
import importlib.util, sys
missing = []
for line in open(sys.argv[1]):
    req, _, mod = line.partition("# import ")
    req = req.split("#")[0].strip()
    if req and mod.strip() and importlib.util.find_spec(mod.strip()) is None:
        missing.append(req)
print(" ".join(missing))
EOF
)"
if [[ ${#MISSING[@]} -gt 0 ]]; then
  say "installing into the check's python: ${MISSING[*]}"
  "$VPY" -m pip install -q "${MISSING[@]}" 2>&1 | tail -5 | tee -a "$OUT/log.txt"
fi

# ---- the InternLM2 modelling code (for the random-weight checkpoints): XTuner's wheel, 2 MB
WHEEL=$(ls "$ROOT"/.whl/xtuner-0.2.0-*.whl 2>/dev/null | head -1)
if [[ -z "$WHEEL" && $INDEX == yes ]]; then
  mkdir -p /tmp/camp-gpu-check/wheels
  "$PY" -m pip download -q --no-deps -d /tmp/camp-gpu-check/wheels xtuner==0.2.0 >/dev/null 2>&1
  WHEEL=$(ls /tmp/camp-gpu-check/wheels/xtuner-0.2.0-*.whl 2>/dev/null | head -1)
fi
[[ -n "$WHEEL" ]] && export CAMP_INTERNLM2_CODE="$WHEEL"
SETUP_S=$(mark)
say "wrapper setup done in ${SETUP_S} s (remote code: ${CAMP_INTERNLM2_CODE:-none})"
python3 - "$OUT/setup.json" "$SETUP_S" "$INDEX" "${TORCH:-}" "${MISSING[*]:-}" <<'EOF'
import json, sys
out, secs, index, torch, missing = sys.argv[1:6]
json.dump({"wrapper_seconds": float(secs), "index": index == "yes", "machine_torch": torch or None,
           "installed_into_check_python": missing.split() if missing else []}, open(out, "w"), indent=1)
EOF

LEFT=$(python3 -c "import time;print(max(30,int($BUDGET-(time.time()-$T0))))")
exec "$VPY" benchmarks/gpu_check.py --out "$OUT" --state-dir "$STATE" --work-dir /tmp/camp-gpu-check/work \
  --budget-s "$LEFT" \
  --setup-s-before "$SETUP_S" "$@"
