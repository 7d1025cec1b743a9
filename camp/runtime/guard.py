"""The process policy: every server or tool camp starts dies with its starter.

Every Job runs as `python -m camp.runtime.guard CMD…` in its own process group (camp.runtime.jobs). The guard
starts CMD in the same group and waits for it, passing its exit status on; a thread polls the parent, and when
the starter is gone — a kernel that crashed or was SIGKILLed, a CLI killed with SIGTERM — it sends the whole
group SIGTERM, then SIGKILL after 5 s (a child that ignores SIGTERM, as Streamlit does, cannot outlive it).
The starter's own side (camp.runtime.jobs): `Job.cancel()` signals the group the same way, atexit cancels every
running Job, and the CLI turns SIGTERM into a normal exit so that atexit runs.
Stdlib only, and quick to start (~30 ms): it wraps every tool call.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 5.0  # SIGTERM → SIGKILL
POLL_S = 1.0


def command(cmd: list[str]) -> list[str]:
    """`cmd` wrapped in the guard, run with this interpreter (the guard needs nothing but the stdlib)."""
    return [sys.executable, "-m", "camp.runtime.guard", *cmd]


def kill_group(pgid: int, grace: float = GRACE_S) -> None:
    """SIGTERM to the group, then SIGKILL to whatever is left after `grace` seconds."""
    for sig, pause in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _watch_parent() -> None:
    if os.getpgrp() != os.getpid():
        return  # not a group leader (run by hand in a shell): killing "our" group could hit the shell's job
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(POLL_S)
            if os.getppid() != parent:
                kill_group(0)
                return

    threading.Thread(target=loop, name="camp-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m camp.runtime.guard CMD [ARGS…]", file=sys.stderr)
        return 2
    _watch_parent()
    exe = shutil.which(argv[0]) or argv[0]
    try:
        child = subprocess.Popen([exe, *argv[1:]])  # same process group: cancel and the parent watch reach it
    except OSError as exc:
        print(f"camp: cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127
    # The tool gets the group's SIGTERM/SIGINT itself; we wait for it and pass its exit status on. (Ignored only
    # after the fork: an ignored signal would stay ignored in the child across exec.)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rc = child.wait()
    return 128 - rc if rc < 0 else rc  # killed by signal N: the shell's 128+N is not what Popen says


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
