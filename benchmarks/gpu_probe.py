#!/usr/bin/env python3
"""The torch side of benchmarks/gpu_check.py, run by it as a camp Job (so the rehearsal's one seam covers it too).

    python benchmarks/gpu_probe.py machine --out machine.json
        nvidia-smi's GPU, torch and CUDA versions, and the HBM bandwidth: a device-to-device copy of 2 GiB, timed
        with CUDA events (bytes read + bytes written per second, the figure a decode step's weight reads face)
    python benchmarks/gpu_probe.py hf --folder MODEL --levels 1,16 --max-tokens 128 --out hf.json
        camp.bench on the folder in-process (camp.chat's transformers backend: on a GPU profile, cuda + bf16),
        level by level, then torch.cuda.max_memory_allocated

Each writes its JSON as it goes. Figures from random-weight checkpoints are "random weights — shapes only".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def machine(out: Path) -> None:
    import torch

    data: dict = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    smi = shutil.which("nvidia-smi")
    if smi:
        r = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        data["nvidia_smi"] = r.stdout.strip()
    if not torch.cuda.is_available():
        data["error"] = "torch sees no CUDA device"
        write(out, data)
        raise SystemExit("torch sees no CUDA device")
    data["device"] = torch.cuda.get_device_name(0)
    data["total_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    write(out, data)
    n = 2 * 2**30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 10
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    data["bandwidth_gbs"] = round(2 * n * reps / seconds / 1e9, 1)  # read + write
    data["bandwidth_how"] = "device-to-device copy of 2 GiB x10, bytes read + written per second (CUDA events)"
    write(out, data)


def hf(folder: str, levels: list[int], max_tokens: int, out: Path) -> None:
    import camp
    from camp.conversation.local import _device_dtype

    device, dtype = _device_dtype()
    data: dict = {"device": device, "dtype": dtype, "bench": []}
    write(out, data)
    for i, c in enumerate(levels):
        r = camp.bench(folder, [c], requests=max(4, c), max_tokens=max_tokens, warmup=i == 0)
        data["bench"] += r.rows
        data.update(target=r.target, notes=r.notes, errors=r.errors)
        write(out, data)
    import torch

    if torch.cuda.is_available():
        data["max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    write(out, data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("machine", "hf"))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--folder")
    p.add_argument("--levels", default="1,16")
    p.add_argument("--max-tokens", type=int, default=128)
    a = p.parse_args(argv)
    if a.mode == "machine":
        machine(a.out)
    else:
        hf(a.folder, [int(x) for x in a.levels.split(",")], a.max_tokens, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
