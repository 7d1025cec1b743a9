"""Benchmark: the training stage of camp.finetune vs the same generated XTuner config run directly.

    python benchmarks/finetune_overhead.py [--model tiny] [--rounds 3] [--iters N]

camp side: `camp.finetune(model, self-cognition set, run_dir=fresh)`, timed by camp itself (`seconds["train"]`:
from finding XTuner's train.py to the Job's verdict, with the live view on, the log parser and the output
check). Direct side: the config.py camp wrote in the warm-up run, run as `<xtuner env>/bin/python
xtuner/tools/train.py config.py --work-dir fresh` with the same environment (camp.xtuner_compat), its output to a
file. Same iterations, a warm env (one warm-up run of each first), and rounds interleaved with alternating order.
Goal: camp/direct ≤ 1.05.
"""

from __future__ import annotations

import argparse
import os
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=None, help="default: the profile's recipe (cpu-tiny: 150)")
    ap.add_argument("--quiet", action="store_true", help="camp side without its live view")
    args = ap.parse_args(argv)

    from camp import data, models, training
    from camp.runtime import envs
    from camp.training import xtuner, xtuner_compat

    records = data.self_cognition("小测", "测试员")
    tmp = Path(tempfile.mkdtemp(prefix="camp-ft-bench-"))
    names = []

    def camp_run(tag: str) -> tuple[float, Path]:
        name = f"bench-ft-{os.getpid()}-{tag}"
        names.append(name)
        r = training.finetune(args.model, records, name=name, max_iters=args.iters, run_dir=tmp / f"camp-{tag}",
                              show=not args.quiet, merge=False)
        return r.seconds["train"], r.config_path

    def direct_run(tag: str, config: Path) -> float:
        py = envs.python("xtuner")
        train_py = envs.find_package("xtuner", "xtuner") / "tools" / "train.py"
        env = {**os.environ, **envs.activation("xtuner"), **xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1",
               "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
        work = tmp / f"direct-{tag}" / "work"
        work.parent.mkdir(parents=True)
        t = time.perf_counter()
        with open(work.parent / "log.txt", "w") as log:
            rc = subprocess.run([str(py), str(train_py), str(config), "--work-dir", str(work)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=work.parent).returncode
        seconds = time.perf_counter() - t
        if rc != 0 or not list(work.glob("iter_*.pth")):
            raise SystemExit(f"direct run failed (rc {rc}): see {work.parent / 'log.txt'}")
        return seconds

    try:
        print("warm-up …", file=sys.stderr)
        _, config = camp_run("warm")
        direct_run("warm", config)
        camp_t, direct_t = [], []
        for i in range(args.rounds):
            order = ("camp", "direct") if i % 2 == 0 else ("direct", "camp")
            for side in order:
                if side == "camp":
                    camp_t.append(camp_run(str(i))[0])
                else:
                    direct_t.append(direct_run(str(i), config))
            print(f"round {i + 1}: camp {camp_t[-1]:.2f} s, direct {direct_t[-1]:.2f} s", file=sys.stderr)
        iters = xtuner.parse_log((tmp / "camp-warm" / "jobs" / "train" / "log.txt").read_text()).total
        mc, md = statistics.median(camp_t), statistics.median(direct_t)
        print(f"training stage, {args.model}, {iters} iterations, {args.rounds} interleaved rounds (warm env)")
        print(f"  camp.finetune (train stage): median {mc:.2f} s  best {min(camp_t):.2f} s  "
              f"[{', '.join(f'{x:.2f}' for x in camp_t)}]")
        print(f"  xtuner tools/train.py direct: median {md:.2f} s  best {min(direct_t):.2f} s  "
              f"[{', '.join(f'{x:.2f}' for x in direct_t)}]")
        print(f"  ratio camp/direct: median {mc / md:.3f}  best {min(camp_t) / min(direct_t):.3f}  (goal <= 1.05)")
    finally:
        for n in names:
            models.unregister(n)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
