"""From `git clone` to the chat lesson's first streamed answer, as a newcomer on this machine gets it.

    python3 benchmarks/first_reply.py [--source REPO] [--keep]

Clones REPO (default: this checkout's committed HEAD) into a temporary folder, runs `make setup` there (the core
env, the `camp` kernel, the tiny model), starts the lesson's kernel and executes the chat lesson's cells in order up
to the first one that streams an answer (`session.stream(…)`), and prints how long each part took and the total up to
the first streamed piece. pip's and uv's caches are used as on any machine that installed Python packages before
(`UV_CACHE_DIR=$(mktemp -d)` measures uv with an empty cache: every wheel it installs is downloaded); the load
average is printed next to the figures, since other work on the machine slows every part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, **kw)
    return time.monotonic() - t0


def _kernel_phase(clone: Path) -> dict:
    """Inside the clone's core env: the lesson's cells through a `camp` kernel, until the first streamed piece."""
    import nbformat
    from jupyter_client.manager import start_new_kernel

    lesson = next(p for p in sorted((clone / "notebooks").glob("*.ipynb")) if "chat_demo" in p.name)
    nb = nbformat.read(lesson, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    last = next(i for i, s in enumerate(cells) if "session.stream(" in s)
    t0 = time.monotonic()
    km, kc = start_new_kernel(kernel_name="camp", cwd=str(lesson.parent))
    out = {"lesson": lesson.name, "kernel_start_s": round(time.monotonic() - t0, 1), "cells": last + 1}
    try:
        for i, source in enumerate(cells[: last + 1]):
            if i == 0:
                source += '\nprofile = "cpu-tiny"'  # as `camp course --profile cpu-tiny` passes it
            msg_id = kc.execute(source)
            while True:
                msg = kc.get_iopub_msg(timeout=600)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "error":
                    raise RuntimeError(f"cell {i} failed: {msg['content']['ename']}: {msg['content']['evalue']}")
                if i == last and kind == "stream" and msg["content"]["text"].strip() and "first_piece_s" not in out:
                    out["first_piece_s"] = round(time.monotonic() - t0, 1)
                    out["first_piece"] = msg["content"]["text"][:40]
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
        out["lesson_cells_s"] = round(time.monotonic() - t0, 1)
    finally:
        km.shutdown_kernel(now=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(ROOT), help="repository to clone (default: this checkout)")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    ap.add_argument("--kernel-phase", default=None, help=argparse.SUPPRESS)  # internal: run inside the clone's env
    args = ap.parse_args()
    if args.kernel_phase:
        print("RESULT " + json.dumps(_kernel_phase(Path(args.kernel_phase)), ensure_ascii=False))
        return 0

    work = Path(tempfile.mkdtemp(prefix="camp-first-reply-"))
    clone = work / "camp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMP_", "VIRTUAL_ENV"))}
    env.update(OMP_NUM_THREADS="1", CAMP_LANG="zh")
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    clone_s = _run(["git", "clone", "-q", "--no-hardlinks", args.source, str(clone)], env=env)
    setup_s = _run(["make", "-s", "setup"], cwd=clone, env=env, stdout=subprocess.DEVNULL)
    before_kernel = time.monotonic() - t0
    r = subprocess.run([str(clone / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "--kernel-phase",
                        str(clone)], cwd=clone, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        return 1
    k = json.loads([x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT "):])
    total = before_kernel + k["first_piece_s"]
    load1 = os.getloadavg()[0]
    print(f"clone                  {clone_s:6.1f} s")
    print(f"make setup             {setup_s:6.1f} s   (core env + camp kernel + tiny model)")
    print(f"kernel start           {k['kernel_start_s']:6.1f} s")
    print(f"first streamed piece   {k['first_piece_s']:6.1f} s   after the kernel started ({k['lesson']}, cells 1-"
          f"{k['cells']}: {k['first_piece']!r})")
    print(f"total                  {total:6.1f} s   from git clone to the first streamed piece "
          f"({total / 180:.2f} × the 3-minute target)")
    print(f"load average           {load0:.1f} at the start, {load1:.1f} at the end (2 cores)")
    if args.keep:
        print(f"clone kept at {clone}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
