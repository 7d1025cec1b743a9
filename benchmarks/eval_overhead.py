"""Benchmark: `camp.evaluate` vs the same generated OpenCompass config run directly in the opencompass env,
and questions per second on the tiny model.

    python benchmarks/eval_overhead.py [--rounds 3] [--model tiny] [--repeat 5]

One warm-up `camp.evaluate` writes the config (and warms the disk cache); then each round runs both sides on
that workload, alternating which goes first so drift on a shared machine hits both alike:
  camp:   camp.evaluate(models, datasets, show=False) — checks, config, Job with progress parsing, judging
          the files, parsing the summary into a DataFrame;
  direct: python -m opencompass.cli.main <the warm-up's config.py> -w <new dir> --debug, with the same
          environment variables, as a plain subprocess.
The workload: the self-cognition check plus the toolchain MCQ set repeated --repeat times (as a custom
.jsonl, so inference is long enough to time). Figures: median wall time per side, the ratio camp/direct of the medians (goal ≤ 1.05; also of the best
runs, which is steadier on a shared, busy machine), and questions per second: end to
end (camp side) and during inference alone (from OpenCompass's own log timestamps, 1-s resolution); CPU
seconds per side (this process and its children) as a load-independent cross-check.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAME = "小助手"
_STAMP = re.compile(r"(\d\d/\d\d \d\d:\d\d:\d\d) - OpenCompass - INFO - (Start inferencing|Running 0-th replica)")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (OpenCompass runs as a child on both sides)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def inference_seconds(log: str) -> float | None:
    """Seconds from the first 'Start inferencing' to the first scoring line in an OpenCompass log."""
    start = end = None
    for m in _STAMP.finditer(log):
        t = datetime.strptime(m.group(1), "%m/%d %H:%M:%S")
        if m.group(2) == "Start inferencing" and start is None:
            start = t
        elif m.group(2).startswith("Running") and end is None:
            end = t
    return (end - start).total_seconds() if start and end else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5, help="copies of the MCQ set in the workload")
    args = ap.parse_args(argv)

    import camp
    from camp import evaluation as ev
    from camp.runtime import envs

    python = str(envs.python("opencompass"))
    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    mcq = (ROOT / "assets" / "datasets" / "internlm_toolchain_mcq.jsonl").read_text(encoding="utf-8")
    (tmp / "mcq_x.jsonl").write_text(mcq * args.repeat, encoding="utf-8")
    DATASETS = ["self_cognition_check", str(tmp / "mcq_x.jsonl")]  # noqa: N806
    kwargs = dict(assistant_name=NAME, show=False)
    warm = camp.evaluate([args.model], DATASETS, run_dir=tmp / "warm", **kwargs)
    questions = sum(len(warm.answers(m, d)) for m in warm.models for d in warm.datasets)

    # the same environment the camp Job gives OpenCompass
    specs_m = ev.resolve_models([args.model])
    specs_d = ev.resolve_datasets(DATASETS, assistant_name=NAME)
    settings = ev.plan(None, specs_m)
    env = {**os.environ, **envs.activation("opencompass"), "PYTHONUNBUFFERED": "1",
           **ev.run_environment(warm.run_dir, specs_m, specs_d, settings)}

    def camp_side(i: int) -> str:
        r = camp.evaluate([args.model], DATASETS, run_dir=tmp / f"camp-{i}", **kwargs)
        assert r.table["score"].notna().all(), r.table
        return (r.run_dir / "log.txt").read_text(encoding="utf-8", errors="replace")

    def direct_side(i: int) -> str:
        work = tmp / f"direct-{i}"
        out = subprocess.run([python, *ev.command(warm.config_path, work, settings)], cwd=warm.run_dir, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0 and list(work.glob("*/summary/summary_*.csv")), out.stdout[-2000:]
        return out.stdout + out.stderr

    sides = {"camp": camp_side, "direct": direct_side}
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    infer: dict[str, list[float]] = {k: [] for k in sides}
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for k in order:
            c, t = cpu_seconds(), time.perf_counter()
            log = sides[k](i)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(cpu_seconds() - c)
            s = inference_seconds(log)
            if s:
                infer[k].append(s)
            print(f"round {i + 1} {k:>6}: {wall[k][-1]:6.2f} s wall, {cpu[k][-1]:6.2f} s CPU"
                  + (f" (inference {s:.0f} s)" if s else ""), file=sys.stderr)

    med = {k: statistics.median(v) for k, v in wall.items()}
    best = {k: min(v) for k, v in wall.items()}
    ratio = med["camp"] / med["direct"]
    print(f"workload: {args.model} × self_cognition_check + toolchain MCQ ×{args.repeat} = {questions} questions, {args.rounds} rounds, "
          f"profile {settings.profile} (batch {settings.batch_size}, --debug={settings.debug})")
    print(f"camp.evaluate        median {med['camp']:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in wall['camp'])})")
    print(f"opencompass direct   median {med['direct']:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in wall['direct'])})")
    print(f"ratio camp/direct    {ratio:.3f} of medians, {best['camp'] / best['direct']:.3f} of best runs "
          "(goal <= 1.05)")
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"CPU seconds          camp {mcpu['camp']:.2f}, direct {mcpu['direct']:.2f} (medians; ratio "
          f"{mcpu['camp'] / mcpu['direct']:.3f})")
    print(f"questions/s          {questions / med['camp']:.2f} end to end (camp.evaluate)")
    all_inf = infer["camp"] + infer["direct"]
    if all_inf:
        print(f"questions/s          {questions / statistics.median(all_inf):.1f} during inference "
              f"(median {statistics.median(all_inf):.0f} s; the rest is OpenCompass start-up and scoring)")
    print(f"run folders under {tmp}")
    return 0 if ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
