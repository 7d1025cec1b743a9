"""How the core reports progress without knowing who watches: a View.

Stages and Jobs never draw anything; they call the current view:
    view.say("xtuner convert: done in 9.8 s")     a line for the student
    view.show(plan)                                an object worth showing (HTML in JupyterLab, its str elsewhere)
    view.follow(job)                               until the Job ends: a progress bar, a loss chart, periodic lines
The default here is headless: lines on stderr, one every few seconds while a Job runs (CI logs, pipes). The UI layer
(camp.ui.progress) supplies the rich view — widgets in JupyterLab, tqdm in a terminal — and `camp`'s public
functions and CLI install it (`use()`); the core never imports camp.ui. `show=False` anywhere means `SILENT`.
"""

from __future__ import annotations

import contextlib
import sys
import time


class View:
    """Headless: plain lines on stderr."""

    every = 5.0  # seconds between progress lines while a Job runs

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def show(self, obj) -> None:
        print(obj, file=sys.stderr, flush=True)

    def follow(self, job, interval: float = 0.25) -> None:
        """Report `job` until it is done (never raises for the Job's outcome: the caller waits and judges)."""
        last, last_t, shown = None, 0.0, 0
        while True:
            done = job.done
            events = list(job.progress.events)
            for e in events[shown:]:
                if e[0] == "sample":
                    self.say(f"[{job.progress.unit} {e[1]}] {e[2]} → {e[3]}")
            shown = len(events)
            line = f"{job.progress.desc}: {status_text(job)}"
            if line != last and time.monotonic() - last_t >= self.every:
                self.say(line)
                last, last_t = line, time.monotonic()
            if done:
                break
            time.sleep(interval)
        self.say(f"{job.name}: {job.status} in {job.seconds or 0:.1f} s — {status_text(job)} (log: {job.log_path})")


class Silent(View):
    def say(self, message: str) -> None:
        pass

    def show(self, obj) -> None:
        pass

    def follow(self, job, interval: float = 0.25) -> None:
        pass


SILENT = Silent()
_current: View = View()


def status_text(job) -> str:
    """'40/100 · loss 1.23 · lr 0.0002 · eta 0:00:12' from a Job's Progress."""
    p = job.progress
    parts = [f"{p.n:g}/{p.total:g}" if p.total else f"{p.n:g}"]
    for k, v in p.metrics.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return " · ".join(parts)


def current() -> View:
    return _current


def use(view: View) -> View:
    """Make `view` the one the core reports to; returns the previous one."""
    global _current
    previous, _current = _current, view
    return previous


@contextlib.contextmanager
def using(view: View):
    previous = use(view)
    try:
        yield view
    finally:
        use(previous)


def get(show) -> View:
    """The view a call with `show=…` reports to: False → SILENT, True/None → the current view, a View → itself."""
    if isinstance(show, View):
        return show
    return SILENT if show is False else _current
