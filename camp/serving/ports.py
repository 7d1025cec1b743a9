"""Ports: is one free, find a free one, and who holds a busy one (so the error can name it).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from camp.runtime.errors import CampError
from camp.serving.engines.lmdeploy import (
    DEFAULT_PORT,
)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SSH_HINT = "ssh -CNg -L {port}:127.0.0.1:{port} root@ssh.intern-ai.org.cn -p <your ssh port>"


# ============================================================================================ ports
def port_free(host: str, port: int) -> bool:
    """Can a server bind host:port now? (TIME_WAIT leftovers of old connections do not count as busy.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# A server binds its port seconds after camp chose it (a cold start of transformers serve: up to a minute on 2 cores).
# Two camp processes starting servers at that moment (two notebooks, two test workers) would both see the first
# port free and both take it; a claim file per chosen port, younger than this and held by a live process, makes
# the second one take the next port.
CLAIM_SECONDS = 120


def free_port(host: str = "127.0.0.1", start: int = DEFAULT_PORT, tries: int = 200) -> int:
    from camp.runtime import config

    claims = config.home() / "ports"
    with config.file_lock(claims / ".lock"):
        for port in range(start, start + tries):
            if port_free(host, port) and not _claimed_by_another(claims / f"{port}.claim"):
                tmp = claims / f".{port}.{os.getpid()}.tmp"
                tmp.write_text(f"{os.getpid()} {time.time()}")
                os.replace(tmp, claims / f"{port}.claim")
                return port
    raise CampError(f"no free port in {start}–{start + tries - 1} on {host} — pass port=")


def _claimed_by_another(claim: Path) -> bool:
    try:
        pid_text, when_text = claim.read_text().split()
        pid, when = int(pid_text), float(when_text)
    except (OSError, ValueError):
        return False
    if pid == os.getpid() or time.time() - when > CLAIM_SECONDS:
        return False  # this process starts its servers one at a time; an old claim's server has bound by now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])  # state 0A = LISTEN
    return inodes


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of the process listening on port, when /proc tells (Linux); else None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    raw = (proc / "cmdline").read_bytes().split(b"\0")
                    cmd = " ".join(a.decode(errors="replace") for a in raw if a)
                    cmd = cmd if len(cmd) <= 160 else cmd[:157] + "…"
                    pid = int(proc.name)
                    from camp.serving.endpoint import endpoints

                    for ep in endpoints():
                        if ep.job is not None and _same_group(pid, ep.job.pid):
                            return f"pid {pid}: camp's own server for {ep.model} at {ep.base_url} (ep.stop() frees it)"
                    return f"pid {pid} ({cmd})"
        except OSError:
            continue  # a process that ended meanwhile, or one we may not inspect
    return None


def _same_group(pid: int, leader: int | None) -> bool:
    try:
        return leader is not None and os.getpgid(pid) == leader
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
