"""Benchmark: homework grading throughput (1 vs 2 workers) and camp's overhead over nbgrader autograde directly.

    python benchmarks/grading_throughput.py [--students 8] [--rounds 2]

The workload: the sample assignment (assets/homework/sample) released once, and --students honest submissions
of it (the full solution), collected into a course folder. Each round, alternating which side goes first:
  camp, 1 worker:   camp.homework.grade(force=True, workers=1) — a sandboxed kernel per submission, each in its
                    own grading copy, results, gradebook sync and report;
  camp, 2 workers:  the same with workers=2;
  nbgrader direct:  `nbgrader autograde sample --force` on a copy of the same course (one process, its default
                    unsandboxed kernel).
Figures: submissions per minute for each (median of the rounds), the 2-vs-1-worker ratio, and the overhead
camp (1 worker) / nbgrader direct (goal ≤ 1.10) in wall time and in CPU seconds (this process and all its
children: load-independent, the steadier figure on a shared, busy machine). The worker ratio is bounded by the
cores that are free while it runs; the overhead is measured like for like (one submission at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def setup(base: Path, students: int) -> Path:
    from camp import homework

    course = base / "course"
    homework.release([ROOT / "assets" / "homework" / "sample"], course=course, show=False)
    sys.path.insert(0, str(ROOT / "tests" / "homework"))
    import submissions

    full = submissions.build(course / "release" / "sample" / "sample.ipynb", course)["s01_full"]["nb"]
    inbox = base / "inbox"
    inbox.mkdir()
    for i in range(students):
        (inbox / f"s{i:03d}__sample.ipynb").write_text(json.dumps(full, ensure_ascii=False))
    homework.collect(inbox, course=course)
    return course


def camp_side(course: Path, workers: int) -> float:
    from camp import homework

    t0 = time.perf_counter()
    homework.grade("sample", course=course, workers=workers, force=True, show=False)
    return time.perf_counter() - t0


def direct_side(course: Path, base: Path) -> float:
    copy = base / "direct"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns(".camp", "autograded", "feedback", "gradebook"))
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    t0 = time.perf_counter()
    r = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde", "sample", "--force",
                        f"--CourseDirectory.root={copy}"], cwd=copy, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"nbgrader autograde failed:\n{r.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="camp-grading-bench-"))
    try:
        course = setup(base, args.students)
        camp_side(course, 1)  # warm-up: disk cache, first kernel start
        times: dict[str, list[float]] = {"camp-1": [], "camp-2": [], "direct": []}
        cpu: dict[str, list[float]] = {"camp-1": [], "camp-2": [], "direct": []}
        for r in range(args.rounds):
            order = ["camp-1", "camp-2", "direct"] if r % 2 == 0 else ["direct", "camp-2", "camp-1"]
            for side in order:
                c0 = cpu_seconds()
                s = direct_side(course, base) if side == "direct" else camp_side(course, int(side[-1]))
                cpu[side].append(cpu_seconds() - c0)
                times[side].append(s)
                print(f"round {r + 1} {side}: {s:.1f} s ({args.students * 60 / s:.1f} submissions/min), "
                      f"{cpu[side][-1]:.1f} CPU s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: args.students * 60 / v for k, v in med.items()}
        print(f"\nsubmissions/min (median of {args.rounds}): camp 1 worker {rate['camp-1']:.1f}, "
              f"camp 2 workers {rate['camp-2']:.1f}, nbgrader autograde directly {rate['direct']:.1f}")
        print(f"2 workers / 1 worker: {rate['camp-2'] / rate['camp-1']:.2f}x")
        print(f"overhead camp (1 worker) / nbgrader direct: {med['camp-1'] / med['direct']:.2f} (goal <= 1.10); "
              f"best runs: {min(times['camp-1']) / min(times['direct']):.2f}; CPU seconds: "
              f"{statistics.median(cpu['camp-1']) / statistics.median(cpu['direct']):.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
