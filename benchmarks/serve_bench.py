"""Benchmark: output tokens/s of the same model served as an endpoint vs generated in-process, in one run.

    python benchmarks/serve_bench.py [--model auto] [--tokens 64] [--rounds 6] [--concurrency 1,4,16]

CPU (cpu-tiny): `transformers serve` (camp.serve) vs in-process transformers (camp.chat), the same prompts and
max tokens, greedy, one warm-up each, rounds interleaved (alternating which side goes first) so drift on a busy
machine hits both alike, at concurrency 1. The ratio endpoint/in-process is the serving overhead: HTTP, JSON,
SSE streaming, transformers serve's own request handling, and a second process competing for the same cores.
The tiny model's decoding steps take ~1.5 ms, so fixed per-request costs show at their largest here; the ratio
is what this lesson's CPU path costs, not a target (on a GPU the engine, not the transport, dominates).

GPU: LMDeploy (camp.serve, TurboMind) vs in-process transformers for the profile's model, at each --concurrency
level for LMDeploy (in-process generates one request at a time, so concurrency only queues it: measured at 1).
The two cannot share a 24 GB GPU (LMDeploy reserves most free memory for its KV cache), so the GPU run is
sequential: in-process first, model freed, then LMDeploy. The course's own figure is LMDeploy ≈ 6× transformers.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["你是谁？", "XTuner 是什么？", "Tell me about the InternLM toolchain in a few sentences.",
           "LMDeploy 有什么用？"]


def _side(target, prompts, tokens, concurrency=1, warmup=False):
    import camp

    r = camp.bench(target, concurrency=(concurrency,), requests=max(len(prompts), 2 * concurrency),
                   prompts=prompts, max_tokens=tokens, warmup=warmup)
    row = r.rows[0]
    if row["errors"]:
        raise SystemExit(f"{r.target}: {row['errors']} failed requests: {r.errors}")
    return row


def cpu_run(args) -> int:
    import camp

    session = camp.chat(args.model)  # loaded once, reused by every in-process round
    with camp.serve(args.model) as ep:
        sides = {"endpoint": ep, "in-process": session}
        for target in sides.values():
            _side(target, PROMPTS, args.tokens, warmup=True)
        tokens = {k: 0 for k in sides}
        seconds = {k: 0.0 for k in sides}
        per_round = {k: [] for k in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                row = _side(sides[name], PROMPTS, args.tokens)
                tokens[name] += row["output_tokens"]
                seconds[name] += row["seconds"]
                per_round[name].append(row["tokens_per_s"])
        print(f"model: {session.backend.describe()} | endpoint: {ep.engine} at {ep.base_url}")
        print(f"{len(PROMPTS)} prompts x {args.rounds} rounds, max {args.tokens} new tokens, greedy, concurrency 1, "
              f"interleaved; cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        print(f"{'':12s} {'tokens':>8s} {'seconds':>9s} {'tokens/s':>10s} {'median of rounds':>17s}")
        for name in sides:
            print(f"{name:12s} {tokens[name]:8d} {seconds[name]:9.3f} {tokens[name] / seconds[name]:10.1f} "
                  f"{statistics.median(per_round[name]):17.1f}")
        total = (tokens["endpoint"] / seconds["endpoint"]) / (tokens["in-process"] / seconds["in-process"])
        med = statistics.median(per_round["endpoint"]) / statistics.median(per_round["in-process"])
        print(f"endpoint / in-process tokens/s: {total:.3f} (medians: {med:.3f}) — serving overhead "
              f"{100 * (1 - total):.0f}%")
        if tokens["endpoint"] != tokens["in-process"]:
            print(f"note: token counts differ ({tokens['endpoint']} vs {tokens['in-process']}): the server's usage "
                  "vs generated ids")
    return 0


def gpu_run(args, prof) -> int:
    import camp
    import camp.conversation.local

    levels = [int(c) for c in args.concurrency.split(",")]
    session = camp.chat(args.model)
    desc = session.backend.describe()
    _side(session, PROMPTS, args.tokens, warmup=True)
    local = [_side(session, PROMPTS, args.tokens) for _ in range(args.rounds)]
    del session
    camp.conversation.local._loaded.clear()
    gc.collect()
    import torch

    torch.cuda.empty_cache()
    t0 = time.perf_counter()
    with camp.serve(args.model, engine="lmdeploy") as ep:
        started = time.perf_counter() - t0
        print(f"LMDeploy ready in {started:.0f} s at {ep.base_url}; plan:\n{ep.plan}")
        served = camp.bench(ep, concurrency=levels, prompts=PROMPTS, max_tokens=args.tokens)
    local_tps = sum(r["output_tokens"] for r in local) / sum(r["seconds"] for r in local)
    print(f"in-process transformers ({desc}), concurrency 1: {local_tps:.1f} tokens/s")
    print(served)
    one = next((r for r in served.rows if r["concurrency"] == 1), served.rows[0])
    best = max(served.rows, key=lambda r: r["tokens_per_s"])
    print(f"LMDeploy / transformers tokens/s: {one['tokens_per_s'] / local_tps:.2f}x at concurrency 1, "
          f"{best['tokens_per_s'] / local_tps:.2f}x at concurrency {best['concurrency']} "
          f"(profile {prof.name}; the course reports ~6x)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="auto")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--concurrency", default="1,4,16", help="GPU: levels for LMDeploy")
    args = ap.parse_args(argv)
    import camp

    prof = camp.profile()
    return gpu_run(args, prof) if prof.device == "cuda" else cpu_run(args)


if __name__ == "__main__":
    sys.exit(main())
