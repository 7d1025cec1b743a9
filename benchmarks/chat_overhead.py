"""Benchmark: tokens/s of ChatSession.stream vs raw model.generate on the same model and prompts, and the
time of `import camp` in a fresh interpreter.

    python benchmarks/chat_overhead.py [--model tiny] [--tokens 128] [--rounds 8]

Both sides generate exactly --tokens new tokens per prompt (min_new_tokens = max_new_tokens, greedy), after
one warm-up each; the rounds interleave the two (alternating which goes first) so drift hits both alike.
Three figures per side: best-of-rounds (the fastest run of each prompt: robust on a shared, busy machine),
mean over all runs, and tokens per CPU-second of the whole process (the streaming side's consumer thread
included). Goals: stream/raw ≥ 0.95; `import camp` ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["你是谁？", "XTuner 是什么？", "Tell me about the InternLM toolchain in a few sentences."]


def import_camp_seconds(repeats: int = 5) -> tuple[float, float]:
    """(median seconds spent in `import camp`, median wall time of `python -c 'import camp'`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import time; t = time.perf_counter(); import camp; print(time.perf_counter() - t)"
    inner, outer = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outer.append(time.perf_counter() - t)
        inner.append(float(out.stdout.strip()))
    return statistics.median(inner), statistics.median(outer)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)

    imp, wall_s = import_camp_seconds()

    import torch

    import camp

    session = camp.chat(args.model)
    backend = session.backend
    model = backend.model
    n = args.tokens
    gen = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}
    encoded = [backend.encode([{"role": "user", "content": p}]) for p in PROMPTS]

    def raw(i: int) -> int:
        inputs = encoded[i]
        with torch.inference_mode():
            out = model.generate(
                **inputs, **gen, eos_token_id=backend.eos_token_id, pad_token_id=backend.pad_token_id
            )
        return out.shape[1] - inputs["input_ids"].shape[1]

    def stream(i: int) -> int:
        session.reset()  # same single-turn prompt as the raw side
        for _piece in session.stream(PROMPTS[i], **gen):
            pass
        return backend.last_stats["tokens"]

    raw(0), stream(0)  # warm-up: first-call allocations, lazy imports
    sides = {"raw": raw, "stream": stream}
    wall = {k: [[] for _ in PROMPTS] for k in sides}  # [side][prompt] -> seconds per run
    cpu = {k: 0.0 for k in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for i in range(len(PROMPTS)):
            for name in order:
                t, c = time.perf_counter(), time.process_time()
                tokens = sides[name](i)
                wall[name][i].append(time.perf_counter() - t)
                cpu[name] += time.process_time() - c  # all threads of this process
                if tokens != n:
                    raise SystemExit(f"{name} generated {tokens} tokens, expected {n}")

    total = n * len(PROMPTS)
    best = {k: total / sum(min(runs) for runs in wall[k]) for k in sides}
    mean = {k: total * args.rounds / sum(sum(runs) for runs in wall[k]) for k in sides}
    per_cpu = {k: total * args.rounds / cpu[k] for k in sides}
    print(f"model: {backend.describe()}  torch threads: {torch.get_num_threads()}  cores: {os.cpu_count()}")
    print(f"{len(PROMPTS)} prompts x {args.rounds} rounds x {n} new tokens, greedy, interleaved")
    print(f"{'tokens/s':24s} {'best-of-rounds':>15s} {'mean':>10s} {'per CPU-second':>15s}")
    print(f"{'raw model.generate':24s} {best['raw']:15.1f} {mean['raw']:10.1f} {per_cpu['raw']:15.1f}")
    print(f"{'ChatSession.stream':24s} {best['stream']:15.1f} {mean['stream']:10.1f} {per_cpu['stream']:15.1f}")
    print(f"{'ratio stream/raw':24s} {best['stream'] / best['raw']:15.3f} {mean['stream'] / mean['raw']:10.3f} "
          f"{per_cpu['stream'] / per_cpu['raw']:15.3f}   (goal >= 0.95)")
    print(f"import camp: {imp:.3f} s in a fresh interpreter (goal <= 0.5 s); "
          f"whole `python -c 'import camp'`: {wall_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
