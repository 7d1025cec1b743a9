"""Benchmark: image requests per second, tiny-vl served (`transformers serve` behind camp.serve) vs in-process
(camp.chat), in one run.

    python benchmarks/vlm_serve_bench.py [--rounds 4] [--requests 8] [--tokens 16]

Each request carries one generated 48-px picture and one question (the colour questions tiny-vl answers, greedy).
Rounds alternate which side goes first, so drift on a busy machine hits both alike; one warm-up request each. The
ratio served/in-process is what serving a picture costs on this CPU path: PNG encoding, base64 in JSON, the
server's own image decoding and processor, HTTP and SSE — against the same processor and generate() in the kernel.
A ratio, not a target. GPU (LMDeploy's api_server vs transformers for InternVL2-2B) is not measured by this script:
no GPU and no InternVL2 weights were available where it was written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()

    import camp
    from camp.multimodal import scenes

    camp.download("tiny-vl")
    pictures = [sc.pil() for sc in scenes.scenes(args.requests, seed=2718)]
    prompts = ["左边的方块是什么颜色？", "What colour is the right square?", "描述这张图片。"]
    local = camp.chat("tiny-vl")
    ep = camp.serve("tiny-vl")
    served, here = [], []
    try:
        for r in range(args.rounds):
            order = [("served", ep), ("in-process", local)]
            for name, target in order if r % 2 == 0 else order[::-1]:
                res = camp.bench(target, concurrency=(1,), requests=args.requests, max_tokens=args.tokens,
                                 prompts=prompts, images=pictures, warmup=r == 0)
                row = res.rows[0]
                if row["errors"]:
                    raise SystemExit(f"{name}: {row['errors']} failed requests: {res.errors}")
                (served if name == "served" else here).append(row["requests_per_s"])
                print(f"round {r + 1} {name:<10} {row['requests_per_s']:6.2f} image requests/s "
                      f"(latency p50 {row['latency_p50_s']:.3f} s)", flush=True)
    finally:
        ep.stop()
    s, h = statistics.median(served), statistics.median(here)
    print(f"\nmedian image requests/s: served {s:.2f}, in-process {h:.2f}; ratio served/in-process {s / h:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
