"""The sandboxed kernel's launcher: `python -m camp.homework.kernel -f CONNECTION_FILE [ipykernel args…]`.

jupyter_client starts this (the `camp-sandbox` kernelspec written by camp.homework.grading) in the submission's
graded folder; it replaces itself with ipykernel running inside camp.agents.sandbox:
- the working folder `/sandbox` is a private, size-capped scratch folder; the submission's own input files (data
  the assignment ships, files the student handed in — never a notebook) appear there read-only;
- read-only: system files, the core env (python and its packages) and the camp package, nothing else of the
  course folder — no other submission, no gradebook, no source notebook with the hidden tests;
- writable: only the scratch folder, a private /tmp, and the folder of its connection file (its sockets);
- no network (it talks to the grader over Unix sockets), a CPU-time budget for the whole notebook, a memory limit,
  a process limit, as an unprivileged user when camp runs as root.
The limits come from CAMP_HOMEWORK_SANDBOX (JSON) set by the grading process. Stdlib + camp only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from camp.agents import sandbox
from camp.runtime import config

CAMP_MOUNT = "/opt/camp-lib"  # camp's package appears here inside the sandbox (on PYTHONPATH)
_NOT_INPUTS = {"timestamp.txt"}


def inputs(folder: Path) -> dict[str, str]:
    """Host file → path under /sandbox, for the files a kernel may read: no notebooks (the graded copy holds the
    hidden tests), no hidden files, no links (a link could point anywhere)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix == ".ipynb" or rel.as_posix() in _NOT_INPUTS:
            continue
        out[str(path)] = f"{sandbox.SANDBOX_DIR}/{rel.as_posix()}"
    return out


def argv(kernel_args: list[str], settings: dict, cwd: Path) -> list[str]:
    conn = Path(kernel_args[kernel_args.index("-f") + 1]).absolute()
    # the Unix sockets live where the grader put them (KernelManager.ip, an absolute path prefix)
    runtime = settings["sockets"]
    python = settings.get("python") or sys.executable
    if os.geteuid() == 0:  # the kernel runs as another user: it must read its connection file
        os.chown(conn, settings["uid"], settings["uid"])
    read_only = {str(config.PACKAGE_DIR): f"{CAMP_MOUNT}/camp", **inputs(cwd), str(conn): str(conn)}
    for host in settings.get("read_only", []):
        read_only[host] = host
    env = {
        "PYTHONPATH": CAMP_MOUNT,
        "IPYTHONDIR": "/tmp/ipython",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "CAMP_HOME": "/tmp/camp",
        "CAMP_LANG": os.environ.get("CAMP_LANG", ""),
    }
    return sandbox.command(
        [python, "-s", "-m", "ipykernel_launcher", *kernel_args],
        python=python,
        timeout=settings["cpu_seconds"],
        memory_mb=settings["memory_mb"],
        max_procs=settings["max_procs"],
        read_only=read_only,
        writable=[runtime],
        scratch_mb=settings["scratch_mb"],
        env=env,
        uid=settings["uid"],
    )


def main() -> None:
    settings = json.loads(os.environ["CAMP_HOMEWORK_SANDBOX"])
    cmd = argv(sys.argv[1:], settings, Path.cwd())
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
