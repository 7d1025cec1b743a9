"""Jobs: every long-running tool call (env creation, training, conversion, evaluation, serving) is one Job.

A Job is a subprocess, optionally inside a named environment, with its own run folder holding `log.txt`
(stdout and stderr, merged) and `job.json` (command, status, exit code, times). A parser turns output lines
into `Progress`; success needs a zero exit status AND the expected outputs (some tools exit 0 on failure).
Views (camp.runtime.progress: plain lines here; tqdm or widgets from camp.ui) only read a Job.
Every Job runs under the guard (camp.runtime.guard): it dies with the process that started it.

    job = Job(["python", "-m", "pip", "install", "x"], name="pip", env="xtuner", expect=["out/model.safetensors"])
    job.run()            # start, show progress, wait; raises JobFailed with the log tail on failure
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camp.runtime import config, progress
from camp.runtime.errors import CampError

GUARD = Path(__file__).with_name("guard.py")  # run as a script: stdlib only, no camp import

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "pending", "running", "succeeded", "failed", "cancelled"
DONE = (SUCCEEDED, FAILED, CANCELLED)


class JobFailed(CampError):
    def __init__(self, job: Job, reason: str):
        self.job = job
        tail = "\n".join("    " + line for line in job.tail(15))
        super().__init__(f"{job.name} failed: {reason}\n  log: {job.log_path}\n  last lines:\n{tail}")


@dataclass
class Progress:
    n: float = 0
    total: float | None = None
    desc: str = ""
    unit: str = "it"
    metrics: dict = field(default_factory=dict)  # e.g. {"loss": 1.23, "lr": 2e-4}
    # what a view may draw beyond a bar, in order: ("loss", iteration, value), ("sample", iteration, question,
    # answer), … — parsers append, views read (the list only grows)
    events: list = field(default_factory=list)

    def update(self, n=None, total=None, desc=None, **metrics):
        if n is not None:
            self.n = n
        if total is not None:
            self.total = total
        if desc is not None:
            self.desc = desc
        self.metrics.update(metrics)


Parser = Callable[[str, Progress], None]
Check = Callable[["Job"], "str | None"]  # returns a problem, or None when the outputs are right

_running: set[Job] = set()
_running_lock = threading.Lock()


def _stop_all_at_exit():
    # No orphans: a kernel or CLI that exits takes its servers and tool processes with it.
    for job in list(_running):
        if job.kill_on_exit:
            job.cancel(grace=3)


atexit.register(_stop_all_at_exit)


def new_run_dir(name: str, parent: Path | None = None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "job"
    base = (parent or config.runs_dir()) / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    path.mkdir(parents=True)
    return path


class Job:
    def __init__(
        self,
        cmd: list[str],
        *,
        name: str,
        env: str | None = None,
        cwd: str | os.PathLike | None = None,
        run_dir: str | os.PathLike | None = None,
        extra_env: dict[str, str] | None = None,
        parser: Parser | None = None,
        expect: Iterable[str | os.PathLike] | Check | None = None,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        kill_on_exit: bool = True,
    ):
        self.cmd = [str(c) for c in cmd]
        self.name = name
        self.env = env
        self.run_dir = Path(run_dir) if run_dir else None
        self.cwd = Path(cwd) if cwd else None
        self.extra_env = dict(extra_env or {})
        self.parser = parser
        self.expect = expect
        self.kill_on_exit = kill_on_exit
        self.progress = Progress(total=total, desc=desc or name, unit=unit)
        self.status = PENDING
        self.returncode: int | None = None
        self.problem: str | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=400)
        self._listeners: list[Callable[[str], None]] = []
        self._cancel_requested = False

    # ----------------------------------------------------------------- running
    @property
    def log_path(self) -> Path | None:
        return self.run_dir / "log.txt" if self.run_dir else None

    def on_line(self, fn: Callable[[str], None]) -> Job:
        """Call fn(line) for every output line (views, live plots)."""
        self._listeners.append(fn)
        return self

    def _environ(self) -> dict[str, str]:
        environ = dict(os.environ)
        if self.env:
            from camp.runtime import envs

            environ.update(envs.activation(self.env))
        environ.setdefault("PYTHONUNBUFFERED", "1")  # stream progress instead of block-buffering it
        if environ.get("MPLBACKEND", "").startswith("module://"):
            # a Jupyter kernel's inline backend leaks through the environment and breaks tools that plot
            environ["MPLBACKEND"] = "Agg"
        environ.update(self.extra_env)
        return environ

    def start(self) -> Job:
        if self.status != PENDING:
            raise CampError(f"job {self.name} was already started ({self.status})")
        if self.run_dir is None:
            self.run_dir = new_run_dir(self.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        environ = self._environ()
        exe = shutil.which(self.cmd[0], path=environ.get("PATH"))
        if exe is None:
            self.status, self.problem = FAILED, f"cannot start {self.cmd[0]}: no such program" + (
                f" in the {self.env} env" if self.env else " on PATH")
            self._save()
            raise CampError(f"{self.name}: {self.problem}")
        argv = [exe, *self.cmd[1:]]
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._log.write(f"$ {shlex.join(argv)}\n")
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(GUARD), *argv],  # the process policy: it dies with this process
                cwd=self.cwd or self.run_dir,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel reaches the tool's children too
            )
        except OSError as exc:
            self._log.close()
            self.status, self.problem = FAILED, f"cannot start {argv[0]}: {exc}"
            self._save()
            raise CampError(f"{self.name}: {self.problem}") from exc
        self.started = time.time()
        self.status = RUNNING
        with _running_lock:
            _running.add(self)
        self._save()
        self._reader = threading.Thread(target=self._read, name=f"job-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self):
        assert self._proc and self._proc.stdout
        buf = b""
        stream = self._proc.stdout
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            # tools redraw progress with \r: treat it as a line end so the parser sees every update
            *lines, buf = re.split(rb"\r\n|\n|\r", buf)
            for raw in lines:
                self._handle(raw.decode("utf-8", "replace"))
        if buf:
            self._handle(buf.decode("utf-8", "replace"))
        stream.close()  # else a ResourceWarning per job shows up in notebooks
        self._proc.wait()
        self._finish()

    def _handle(self, line: str):
        if not line.strip():
            return
        self._log.write(line + "\n")
        self._log.flush()
        self._tail.append(line)
        if self.parser:
            try:
                self.parser(line, self.progress)
            except Exception as exc:  # a parser bug must not kill the job
                self._log.write(f"[camp] progress parser error: {exc!r}\n")
        for fn in self._listeners:
            try:
                fn(line)
            except Exception:
                pass

    def _finish(self):
        self.returncode = self._proc.returncode
        self.ended = time.time()
        if self._cancel_requested:
            self.status, self.problem = CANCELLED, "cancelled"
        elif self.returncode != 0:
            self.status, self.problem = FAILED, f"exit status {self.returncode}"
        else:
            problem = self.check_outputs()
            self.status, self.problem = (FAILED, problem) if problem else (SUCCEEDED, None)
        self._log.write(f"[camp] {self.status}" + (f": {self.problem}" if self.problem else "") + "\n")
        self._log.close()
        with _running_lock:
            _running.discard(self)
        self._save()

    def check_outputs(self) -> str | None:
        """The tool exited 0; are its outputs really there? (XTuner, OpenCompass exit 0 on failure.)"""
        if self.expect is None:
            return None
        if callable(self.expect):
            return self.expect(self)
        base = self.cwd or self.run_dir
        for item in self.expect:
            p = Path(item)
            p = p if p.is_absolute() else base / p
            if not p.exists() or (p.is_file() and p.stat().st_size == 0):
                return f"exited 0 but the expected output {p} is missing or empty"
        return None

    # ----------------------------------------------------------------- control
    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def wait(self, timeout: float | None = None, check: bool = True) -> Job:
        if self.status == PENDING:
            self.start()
        if self._reader:
            self._reader.join(timeout)
            if self._reader.is_alive():
                raise TimeoutError(f"{self.name} still running after {timeout} s (log: {self.log_path})")
        if check and self.status != SUCCEEDED:
            raise JobFailed(self, self.problem or self.status)
        return self

    def cancel(self, grace: float = 5.0) -> Job:
        """Stop the tool and its children: SIGTERM to its process group, SIGKILL after `grace` seconds."""
        if self._proc is None or self.done:
            return self
        self._cancel_requested = True
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self._proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._reader and threading.current_thread() is not self._reader:
            self._reader.join(10)
        return self

    stop = cancel

    def run(self, show=True, timeout: float | None = None) -> Job:
        """Start (if needed), report progress to the view (`show`: see camp.runtime.progress.get) while waiting,
        and raise JobFailed unless it succeeded."""
        if self.status == PENDING:
            self.start()
        try:
            progress.get(show).follow(self)
        except KeyboardInterrupt:
            self.cancel()
            raise
        return self.wait(timeout)

    def tail(self, n: int = 20) -> list[str]:
        return list(self._tail)[-n:]

    def _save(self):
        if not self.run_dir:
            return
        info = {
            "name": self.name,
            "cmd": self.cmd,
            "env": self.env,
            # what a student needs to run the same command by hand (result.commands()); no secrets
            "cwd": str(self.cwd or self.run_dir),
            "extra_env": {k: ("***" if "KEY" in k.upper() else v) for k, v in self.extra_env.items()},
            "status": self.status,
            "returncode": self.returncode,
            "problem": self.problem,
            "started": self.started,
            "ended": self.ended,
            "progress": {k: v for k, v in asdict(self.progress).items() if k != "events"},
        }
        tmp = self.run_dir / "job.json.tmp"
        tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str))
        tmp.replace(self.run_dir / "job.json")

    def __repr__(self):
        return f"<Job {self.name} {self.status} rc={self.returncode} run_dir={self.run_dir}>"

    def __enter__(self):
        if self.status == PENDING:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cancel()
