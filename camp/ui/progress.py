"""A Job's progress view: tqdm.auto is a widget bar in JupyterLab and a text bar in a terminal."""

from __future__ import annotations

import sys
import time


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def follow(job, interval: float = 0.25) -> None:
    """Show `job`'s progress until it ends (does not raise; call job.wait() for the verdict)."""
    from camp.ui import in_notebook

    if not in_notebook() and not sys.stderr.isatty():  # CI logs, pipes: a line every few seconds, no \r art
        return _follow_plain(job, interval)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # bootstrap interpreter without tqdm: plain lines
        return _follow_plain(job, interval)
    p = job.progress
    bar = tqdm(total=p.total, desc=p.desc, unit=p.unit, dynamic_ncols=True, leave=True)
    try:
        while True:
            done = job.done
            if p.total != bar.total:
                bar.total = p.total
            bar.n = p.n
            bar.set_description(p.desc, refresh=False)
            if p.metrics:
                bar.set_postfix({k: _fmt(v) for k, v in p.metrics.items()}, refresh=False)
            bar.refresh()
            if done:
                break
            time.sleep(interval)
        if job.status == "succeeded" and p.total and bar.n < p.total:
            bar.n = p.total
            bar.refresh()
    finally:
        bar.close()
    print(f"{job.name}: {job.status} in {job.seconds or 0:.1f} s (log: {job.log_path})", file=sys.stderr)


def _follow_plain(job, interval, every: float = 5.0):
    last, last_t = None, 0.0
    while not job.done:
        p = job.progress
        line = f"{p.desc}: {p.n:g}" + (f"/{p.total:g}" if p.total else "")
        if line != last and time.time() - last_t >= every:  # a line every few seconds, not per package
            print(line, file=sys.stderr, flush=True)
            last, last_t = line, time.time()
        time.sleep(interval)
    print(f"{job.name}: {job.status} in {job.seconds or 0:.1f} s (log: {job.log_path})", file=sys.stderr)
