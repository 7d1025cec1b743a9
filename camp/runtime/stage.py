"""The stage contract: what every tool stage (fine-tune, evaluate, quantize, serve, env creation, and each later
one) does, in this order, and the one place that does the common parts.

    1. validate()          everything that can be checked before anything starts: inputs, plan, machine
                           (raise CampError naming the problem and the fix — nothing is written yet)
    (check_run_dir)        a given run folder's state, e.g. a started run resumed with other data
    2. the tool's env      ensured by ONE policy (envs.ensure): used when current, created on first use with a
                           progress bar when missing or stale, refused on a machine that cannot run it
    3. prepare(run_dir)    write the tool's config and inputs into the run folder (a student can open them and run
                           the tool by hand: `commands()` says how); may return a finished result to reuse
    4. steps(run_dir)      the tool runs, as `Step`s, in order: each becomes a Job (camp.runtime.jobs) with its
                           parser; a generator, so a step can depend on the one before and a finished one can be
                           skipped (resume)
    5. each step is judged from its outputs (`Step.check`), never from the exit status alone (XTuner and
       OpenCompass exit 0 on failure); a failure is ONE line saying why (`Step.hints` + camp.runtime.failures)
       with the log path: StageError
    6. finish(run_dir, jobs) the result object (its views live in camp.ui)

`Stage.run()` is that template. A stage whose shape differs (a server that keeps running, a partial result worth
returning) overrides `run()` but still calls validate / ensure_env / run_step. Progress goes to a View
(camp.runtime.progress), never to a UI module. docs/adding-a-stage.md walks through a new stage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from camp.runtime import failures, progress
from camp.runtime.errors import CampError


class StageError(CampError):
    """A tool run failed: `step`, `reason` (one line), `job` (its log: job.log_path)."""

    def __init__(self, step: str, reason: str, job=None):
        self.step, self.reason, self.job = step, reason, job
        log = f"\n  log: {job.log_path}" if job is not None and job.log_path else ""
        super().__init__(f"{step} failed: {reason}{log}")


@dataclass
class Step:
    """One run of a tool: what the Job needs, and how to judge and explain it."""

    name: str  # "xtuner train": also the Job's name
    cmd: list[str]
    run_dir: Path  # the Job's folder: log.txt, job.json
    env: str | None = None  # the tool env the command runs in (None: this interpreter's)
    cwd: Path | None = None
    extra_env: dict = field(default_factory=dict)
    parser: Callable | None = None  # (line, Progress) -> None
    check: Callable | None = None  # (Job) -> problem | None, after exit 0: are the outputs really there?
    hints: Sequence[tuple[str, str]] = ()  # (regex, explanation) for the log: see camp.runtime.failures
    explain: Callable | None = None  # (log lines) -> one line | None: the tool's own explainer, tried first
    total: float | None = None
    desc: str | None = None
    unit: str = "it"
    allow_failure: bool = False  # the stage judges a failed run itself (finish) instead of raising
    # servers: the step keeps running; it is ready when ready(job) is true, within timeout seconds
    ready: Callable | None = None
    timeout: float = 180.0
    on_start: Callable | None = None  # (Job) -> None, right after the process started (e.g. remember its pid)
    on_end: Callable | None = None  # (Job) -> None, once it ended in any way, Ctrl-C included (forget that pid)
    interrupted: str | None = None  # what to tell a student who pressed Ctrl-C (how to resume)

    def job(self):
        from camp.runtime.jobs import Job

        return Job(self.cmd, name=self.name, env=self.env, cwd=self.cwd, run_dir=self.run_dir,
                   extra_env=self.extra_env, parser=self.parser, expect=self.check, total=self.total,
                   desc=self.desc or self.name, unit=self.unit)


def explain(job, hints: Sequence[tuple[str, str]] = (), explainer: Callable | None = None) -> str:
    """Why `job` failed, in one line: the cause found in its output, with the Job's own verdict."""
    why = (explainer(job.tail(400)) if explainer else None) or failures.explain(job.tail(400), hints)
    problem = job.problem or job.status
    if not why:
        return problem
    return why if problem in why else f"{why} ({problem})"


def run_step(step: Step, view: progress.View | None = None):
    """Run one step as a Job, shown on `view`; returns the Job once it succeeded (or, with allow_failure, ended).
    A server step returns once ready(job) holds. Raises StageError (one line + log path) otherwise."""
    view = view or progress.current()
    job = step.job()
    job.start()
    if step.on_start is not None:
        step.on_start(job)
    if step.ready is not None:
        return _until_ready(step, job, view)
    try:
        view.follow(job)
        job.wait(check=False)
    except KeyboardInterrupt:
        job.cancel()
        if step.interrupted:
            view.say(step.interrupted)
        raise
    finally:
        if step.on_end is not None and job.done:
            step.on_end(job)
    if job.status != "succeeded" and not step.allow_failure:
        raise StageError(step.name, explain(job, step.hints, step.explain), job)
    return job


def _until_ready(step: Step, job, view):
    deadline = time.monotonic() + step.timeout
    try:
        while True:
            if job.done:
                raise StageError(step.name, f"it exited ({job.status}) before it was ready — "
                                 + explain(job, step.hints), job)
            if step.ready(job):
                return job
            if time.monotonic() > deadline:
                job.cancel(grace=3)
                raise StageError(step.name, f"not ready within {step.timeout:.0f} s"
                                 + (f" — {failures.explain(job.tail(60), step.hints)}"
                                    if failures.explain(job.tail(60), step.hints) else ""), job)
            time.sleep(0.25)
    except KeyboardInterrupt:  # interrupted while loading: leave nothing behind
        job.cancel(grace=3)
        raise


def ensure_env(name: str | None, view: progress.View | None = None) -> Path | None:
    """The one env policy: the env's python, creating the env first (once, with a progress bar) when it is missing
    or its requirements changed. None for stages that run in this interpreter."""
    if name is None:
        return None
    from camp.runtime import envs

    return envs.ensure(name, view=view or progress.current())


class Stage:
    """Subclass and fill in the steps of the contract (see the module docstring)."""

    name: ClassVar[str] = "stage"  # the registry's name, and the run folder's prefix
    env: ClassVar[str | None] = None  # the tool environment its steps run in

    def validate(self) -> None:
        """Check everything that can be checked before anything starts; raise CampError."""

    def check_run_dir(self, run_dir: Path) -> None:
        """Checks that need the run folder but not the tool (a started run resumed with other data): before the
        env, so a refusal never waits for an env to be built."""

    def prepare(self, run_dir: Path):
        """Write the tool's config and inputs into run_dir. Return a finished result to skip the run (reuse)."""
        return None

    def steps(self, run_dir: Path) -> Iterator[Step]:
        return iter(())

    def finish(self, run_dir: Path, jobs: list):
        return run_dir

    def lock(self, run_dir: Path):
        """Held from prepare to finish (default: nothing): e.g. one fine-tune per run folder."""
        return contextlib.nullcontext()

    def run_dir(self, run_dir=None) -> Path:
        from camp.runtime.jobs import new_run_dir

        if run_dir is None:
            return new_run_dir(self.name)
        path = Path(run_dir).expanduser().absolute()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, *, run_dir=None, show=True):
        view = progress.get(show)
        self.validate()
        folder = self.run_dir(run_dir)
        self.check_run_dir(folder)
        ensure_env(self.env, view)
        with self.lock(folder):
            reused = self.prepare(folder)
            if reused is not None:
                return reused
            jobs = [run_step(step, view) for step in self.steps(folder)]
            return self.finish(folder, jobs)
