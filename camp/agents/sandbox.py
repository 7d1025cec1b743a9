"""Run model-written Python in a separate, limited process (the agent's code interpreter).

With bubblewrap (`bwrap`) the code sees only read-only system files, the interpreter, a private /tmp and its
own empty working folder `/sandbox`; it has no network, a memory limit, a process-count limit, a CPU limit
and a wall-clock limit enforced here. Whatever it runs into comes back as a `SandboxResult` whose `reason`
says why in one sentence, so the agent can read it as an observation; the calling process (kernel, agent
loop) is never at risk.

Without bwrap the code still runs in its own process with the limits and a private folder, but files and
network are NOT isolated (`backend()` says "rlimits-only" and every observation says so).

Pure stdlib; importing this module is cheap.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

__all__ = ["SandboxResult", "run_python", "command", "backend", "SANDBOX_DIR", "INSTALL_HINT"]

# Where the code's private working folder appears inside the sandbox.
SANDBOX_DIR = "/sandbox"
# The unprivileged uid/gid the code runs as when the caller is root: RLIMIT_NPROC is not enforced for root.
NOBODY = 65534
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`) to isolate files and network"
# Largest file the code may write (RLIMIT_FSIZE) and size of its private /tmp (tmpfs lives in RAM).
FILE_LIMIT_MB = 256
TMP_LIMIT_MB = 256
# Output kept per stream; the rest is read and thrown away so a print loop cannot fill the caller's memory.
KEEP_BYTES = 1 << 20
OBSERVATION_CHARS = 4000

_ISOLATION_NOTE = (
    "note: rlimits-only sandbox — limits apply, but files and network are NOT isolated; " + INSTALL_HINT
)


@dataclass
class SandboxResult:
    ok: bool
    stdout: str
    stderr: str
    returncode: int | None
    reason: str | None = None
    backend: str = "bubblewrap"

    def observation(self, limit: int = OBSERVATION_CHARS) -> str:
        """What goes back to the agent: output, the error's tail and the reason, cut to `limit` characters."""
        parts = []
        if self.stdout.strip():
            parts.append(_clip(self.stdout.rstrip(), limit // 2))
        if self.stderr.strip() and not self.ok:
            parts.append("[stderr]\n" + _clip(_tidy_traceback(self.stderr).rstrip(), limit // 2, keep="tail"))
        if self.reason:
            parts.append("[sandbox] " + self.reason)
        if self.backend != "bubblewrap":
            parts.append("[sandbox] " + _ISOLATION_NOTE)
        if not parts:
            parts.append("(no output)" if self.ok else f"(no output; exit status {self.returncode})")
        return _clip("\n".join(parts), limit, keep="both")


@lru_cache(maxsize=1)
def backend() -> str:
    """'bubblewrap' when bwrap and prlimit are usable here, else 'rlimits-only' (no file/network isolation)."""
    if sys.platform.startswith("linux") and shutil.which("bwrap") and shutil.which("prlimit"):
        if os.geteuid() != 0 or shutil.which("setpriv"):
            return "bubblewrap"
    return "rlimits-only"


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_procs: int = 64,
    files: dict[str, str] | None = None,
    network: bool = False,
    python: str | os.PathLike | None = None,
) -> SandboxResult:
    """Run `code` as the script `/sandbox/main.py` in a fresh sandbox; never raises for anything the code does.

    `files` are written into the working folder first (relative paths only). `python` defaults to the
    calling interpreter (so the caller's packages are importable, read-only).
    """
    from camp.runtime.errors import CampError

    if timeout <= 0 or memory_mb <= 0 or max_procs <= 0:
        raise CampError("sandbox limits must be positive — pass timeout > 0, memory_mb > 0, max_procs > 0")
    interpreter = _interpreter(str(python or sys.executable))
    kind = backend()
    run_dir = Path(tempfile.mkdtemp(prefix="camp-sandbox-"))
    try:
        work = run_dir / "work"
        work.mkdir()
        script = "main.py" if "main.py" not in (files or {}) else "_sandbox_main.py"
        _write_files(work, {**(files or {}), script: code})
        drop = kind == "bubblewrap" and os.geteuid() == 0
        if drop:
            for p in [work, *work.rglob("*")]:
                os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
        limits = _limits(timeout, memory_mb, max_procs)
        if kind == "bubblewrap":
            # -E -s: ignore PYTHON* variables and the user site; unlike -I it keeps /sandbox on sys.path, so the
            # code can import modules it wrote itself.
            argv = _bwrap_argv(
                interpreter.roots, work, [interpreter.executable, "-E", "-s", script], limits, network=network,
                drop=drop, memory_mb=memory_mb,
            )
            cwd = str(run_dir)
        else:
            argv = ["prlimit", *limits, "--", interpreter.executable, "-E", "-s", script]
            if not shutil.which("prlimit"):
                argv = argv[argv.index("--") + 1 :]
            cwd = str(work)
        result = _execute(
            argv,
            cwd=cwd,
            env=_env(work if kind != "bubblewrap" else None),
            timeout=timeout,
            memory_mb=memory_mb,
            max_procs=max_procs,
            kind=kind,
        )
        result.backend = kind
        return result
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def command(
    argv: list[str],
    *,
    python: str | os.PathLike | None = None,
    timeout: float = 60.0,
    memory_mb: int = 2048,
    max_procs: int = 64,
    read_only: dict[str, str] | None = None,
    writable: list[str] | None = None,
    scratch_mb: int = TMP_LIMIT_MB,
    env: dict[str, str] | None = None,
    uid: int = NOBODY,
) -> list[str]:
    """The full command line that runs `argv` sandboxed, for a caller that starts (or execs) it itself — a Jupyter
    kernel, say. Same isolation and limits as run_python (CPU time `timeout` is the only clock: the caller keeps
    its own wall clock), except that the working folder `/sandbox` is a private tmpfs of `scratch_mb`.

    `read_only` maps host paths to where they appear inside (files or trees, e.g. inputs under /sandbox);
    `writable` host folders appear at the same path and are handed to the sandbox's user (when camp runs as root
    the code runs as `uid`: give parallel sandboxes different uids, the process limit counts per uid). `python`'s
    prefix is bound read-only so argv can start it. Needs bubblewrap (backend() == "bubblewrap").
    """
    from camp.runtime.errors import CampError

    if backend() != "bubblewrap":
        raise CampError("sandbox.command needs bubblewrap — " + INSTALL_HINT)
    if timeout <= 0 or memory_mb <= 0 or max_procs <= 0 or scratch_mb <= 0:
        raise CampError("sandbox limits must be positive — pass timeout, memory_mb, max_procs, scratch_mb > 0")
    roots = _interpreter(str(python or sys.executable)).roots
    drop = os.geteuid() == 0
    for folder in writable or []:
        if drop:
            os.chown(folder, uid, uid)
    return _bwrap_argv(
        roots, None, list(argv), _limits(timeout, memory_mb, max_procs), network=False, drop=drop,
        memory_mb=memory_mb, read_only=read_only, writable=writable, scratch_mb=scratch_mb, env=env, uid=uid,
    )


# ---------------------------------------------------------------------------------------------------------------
# building the command


@dataclass(frozen=True)
class _Interpreter:
    executable: str
    roots: tuple[str, ...]  # directories that must be visible (read-only) for it to start and import


@lru_cache(maxsize=8)
def _interpreter(executable: str) -> _Interpreter:
    from camp.runtime.errors import CampError

    if executable == sys.executable:
        found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        probe = (
            "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sep='\\n')"
        )
        try:
            out = subprocess.run([executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
        except OSError as exc:
            raise CampError(
                f"cannot run the sandbox interpreter {executable}: {exc} — pass an existing python"
            ) from exc
        if out.returncode != 0:
            raise CampError(f"the sandbox interpreter {executable} failed to start — pass a working python")
        found = out.stdout.split()
    # The executable may be a symlink into yet another prefix (venv → pyenv): follow it.
    found += [str(Path(executable).resolve().parent.parent), str(Path(executable).parent.parent)]
    roots: list[str] = []
    for r in sorted({os.path.realpath(p) for p in found} | set(found), key=len):
        if _under(r, "/usr") or any(_under(r, x) for x in roots) or not os.path.isdir(r):
            continue
        roots.append(r)
    return _Interpreter(executable, tuple(roots))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _limits(timeout: float, memory_mb: int, max_procs: int) -> list[str]:
    # The CPU limit is a backstop behind the wall clock (a busy loop is stopped by whichever comes first).
    return [
        f"--as={memory_mb << 20}",
        f"--nproc={max_procs}",
        f"--cpu={math.ceil(timeout) + 1}",
        f"--fsize={FILE_LIMIT_MB << 20}",
        "--core=0",
    ]


def _bwrap_argv(
    roots: tuple[str, ...],
    work: Path | None,
    cmd: list[str],
    limits: list[str],
    *,
    network: bool,
    drop: bool,
    memory_mb: int,
    read_only: dict[str, str] | None = None,
    writable: list[str] | None = None,
    scratch_mb: int = TMP_LIMIT_MB,
    env: dict[str, str] | None = None,
    uid: int = NOBODY,
) -> list[str]:
    argv = ["prlimit", *limits, "--", "bwrap"]
    if drop:
        # As root bwrap runs privileged and must not create a user namespace: the code has to run as the real
        # uid 65534 on the host for RLIMIT_NPROC to count (setpriv below does that, keeping no capabilities).
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            argv += ["--unshare-net"]
    else:
        argv += ["--unshare-all", "--disable-userns"] + (["--share-net"] if network else [])
    argv += ["--die-with-parent", "--new-session", "--clearenv"]
    for key, value in {**_env(None), **(env or {})}.items():
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/" + name)
        if p.is_symlink():  # merged-/usr systems
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    etc = ["/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group"]
    if network:
        etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates"]
    for p in etc:
        argv += ["--ro-bind-try", p, p]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(min(TMP_LIMIT_MB, memory_mb) << 20),
        "--tmpfs",
        "/tmp",
    ]
    # bwrap creates missing parents of mount points 0700 when privileged: make them traversable for uid 65534.
    made: set[str] = {"/", "/usr", "/tmp", "/proc", "/dev"}

    def parents(path: str) -> list[str]:
        out = []
        for parent in reversed(PurePosixPath(path).parents):
            if str(parent) not in made:
                made.add(str(parent))
                out += ["--perms", "0755", "--dir", str(parent)]
        return out

    for root in roots:
        argv += [*parents(root), "--ro-bind", root, root]
    if work is not None:
        argv += ["--bind", str(work), SANDBOX_DIR]
    else:  # a private scratch folder in RAM, its size capped: filling it fails with "No space left on device"
        argv += ["--perms", "0777", "--size", str(scratch_mb << 20), "--tmpfs", SANDBOX_DIR]
        made.add(SANDBOX_DIR)
    for folder in writable or []:
        argv += [*parents(folder), "--bind", folder, folder]
    for host, inside in (read_only or {}).items():
        argv += [*parents(inside), "--ro-bind", host, inside]
    argv += ["--chdir", SANDBOX_DIR]
    if drop:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        argv += [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return argv + cmd


def _env(home: Path | None) -> dict[str, str]:
    home_dir = str(home) if home else SANDBOX_DIR
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home_dir,
        "TMPDIR": "/tmp" if home is None else home_dir,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
    }
    # One thread per numeric library: threads count against the process limit and reserve address space.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    return env


def _write_files(work: Path, files: dict[str, str]) -> None:
    from camp.runtime.errors import CampError

    for name, text in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise CampError(f"sandbox file name {name!r} must be a relative path inside the working folder")
        target = work.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# running and explaining


def _execute(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float,
    memory_mb: int,
    max_procs: int,
    kind: str,
) -> SandboxResult:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return SandboxResult(False, "", "", None, f"sandbox could not start: {exc}", kind)
    out, err = _Drain(proc.stdout), _Drain(proc.stderr)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Kill the whole group in every case: leftovers (background children) must not outlive the call.
        # Under bwrap the pid namespace dies with its init, taking any process that left the group with it.
        _kill_group(proc)
    out.join()
    err.join()
    stdout, stderr = out.text(), err.text()
    rc = proc.returncode
    reason = _explain(
        rc, stderr, timed_out=timed_out, timeout=timeout, memory_mb=memory_mb, max_procs=max_procs
    )
    if not timed_out and rc in (1, 127) and re.match(r"(bwrap|prlimit|setpriv): ", stderr):
        reason = "sandbox could not start: " + stderr.strip().splitlines()[-1]
    return SandboxResult(
        ok=rc == 0 and not timed_out,
        stdout=stdout,
        stderr=stderr,
        returncode=None if timed_out else rc,
        reason=reason,
        backend=kind,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: proc.kill()):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


class _Drain:
    """Reads a pipe to its end in a thread, keeping the first KEEP_BYTES."""

    def __init__(self, pipe) -> None:
        self._pipe, self._chunks, self._kept, self.dropped = pipe, [], 0, 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := self._pipe.read1(65536):
            room = KEEP_BYTES - self._kept
            if room > 0:
                self._chunks.append(chunk[:room])
                self._kept += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - max(room, 0))
        self._pipe.close()

    def join(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        text = b"".join(self._chunks).decode("utf-8", errors="replace")
        return text + (f"\n… ({self.dropped} more bytes of output dropped)\n" if self.dropped else "")


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|error|Exit|Interrupt))(?:: ?(.*))?$")
_PATH_IN_MSG = re.compile(r"'(/[^']*)'")


def _explain(
    rc: int | None, stderr: str, *, timed_out: bool, timeout: float, memory_mb: int, max_procs: int
) -> str | None:
    """One sentence saying which limit or isolation rule stopped the code; None for an ordinary error."""
    if timed_out:
        # Say what else went wrong first (e.g. threads refused, then the survivors hung): the agent can fix that.
        before = _explain(
            0, stderr, timed_out=False, timeout=timeout, memory_mb=memory_mb, max_procs=max_procs
        )
        return f"stopped: ran longer than {timeout:g} s (wall-clock limit)" + (
            f"; before that: {before}" if before else ""
        )
    if rc == -signal.SIGXCPU:
        return f"stopped: used more than {math.ceil(timeout) + 1} s of CPU time (CPU limit)"
    if rc == -signal.SIGXFSZ:
        return f"stopped: tried to write a file larger than {FILE_LIMIT_MB} MiB (file size limit)"
    exc_type, message = _last_exception(stderr)
    mem = f"stopped: memory limit of {_mib(memory_mb)} reached"
    if exc_type == "MemoryError":
        return mem + " (MemoryError)"
    if "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr or "out of memory" in stderr.lower():
        return mem + " (allocation failed)"
    if rc == -signal.SIGKILL:
        return f"stopped: killed by the system (likely the memory limit of {_mib(memory_mb)})"
    if exc_type is None:
        return None
    if (
        exc_type == "BlockingIOError"
        or "can't start new thread" in message
        or "Resource temporarily unavailable" in message
    ):
        return f"refused: too many processes or threads (limit {max_procs})"
    if (
        exc_type
        in (
            "ConnectionRefusedError",
            "socket.gaierror",
            "gaierror",
            "urllib.error.URLError",
            "ConnectionError",
            "requests.exceptions.ConnectionError",
        )
        or "Network is unreachable" in message
        or "Temporary failure in name resolution" in message
    ):
        return f"no network in the sandbox ({exc_type}: {message.strip()[:120]})"
    if exc_type in (
        "FileNotFoundError",
        "PermissionError",
        "OSError",
        "IsADirectoryError",
        "NotADirectoryError",
    ):
        match = _PATH_IN_MSG.search(message)
        path = match.group(1) if match else None
        if path and not _under(path, SANDBOX_DIR):
            if "Read-only file system" in message:
                return f"cannot write {path}: outside the sandbox (only {SANDBOX_DIR} and /tmp are writable)"
            if exc_type == "PermissionError":
                # reading /etc/shadow and writing / both end here: the code runs as an unprivileged user
                return (f"permission denied for {path}: outside the sandbox (it runs as an unprivileged user "
                        f"and may write only in {SANDBOX_DIR} and /tmp)")
            return f"cannot read {path}: outside the sandbox (the code sees only {SANDBOX_DIR}, a private /tmp and system files)"
    return None


def _last_exception(stderr: str) -> tuple[str | None, str]:
    for line in reversed(stderr.strip().splitlines()[-40:]):
        m = _EXC_LINE.match(line)
        if m:
            return m.group(1), m.group(2) or ""
    return None, ""


def _mib(mb: int) -> str:
    return f"{mb // 1024} GiB" if mb % 1024 == 0 else f"{mb} MiB"


def _tidy_traceback(stderr: str) -> str:
    # The agent needs the failing line and the exception, not a long stack: keep the last 12 lines.
    lines = stderr.rstrip().splitlines()
    return "\n".join(lines if len(lines) <= 12 else ["…", *lines[-12:]])


def _clip(text: str, limit: int, keep: str = "head") -> str:
    if len(text) <= limit:
        return text
    cut = f"\n… ({len(text) - limit} characters cut) …\n"
    if keep == "tail":
        return cut.lstrip("\n") + text[-limit:]
    if keep == "both":
        return text[: limit // 2] + cut + text[-limit // 2 :]
    return text[:limit] + cut.rstrip("\n")
