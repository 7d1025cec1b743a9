"""The tool command lines a stage ran, read back from its run folder's job.json files, for a student to see and
to run by hand: `result.commands()` on a fine-tune, an evaluation or an endpoint.

Each command is shown twice: `ran` is exactly what camp started (absolute paths, the env's own python), `by_hand`
is the same step written the way the official tutorials write it (`xtuner train config.py …`, `opencompass …`,
`lmdeploy serve api_server …`), run inside the tool's env with `camp env run ENV -- …`, from the run folder.
"""

from __future__ import annotations

import html
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SECRET_FLAGS = ("--api-keys", "--api-key")  # their values stay out of what a notebook shows and saves


def _masked(argv) -> list[str]:
    out, hide = [], False
    for a in argv:
        out.append("***" if hide else str(a))
        hide = str(a) in SECRET_FLAGS
    return out


@dataclass
class ToolCommand:
    step: str  # what it did: "train", "convert", "merge", "eval", "serve"
    env: str | None  # the tool env it ran in (None: the core env)
    argv: list  # the exact command line
    cwd: str | None  # where it ran
    status: str = ""
    extra_env: dict = field(default_factory=dict)  # variables camp set for it (workarounds, data paths)
    tool_argv: list | None = None  # the same step as the tool's own CLI (set by the stage's result)

    @property
    def ran(self) -> str:
        env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in self.extra_env.items())
        return (env + " " if env else "") + shlex.join(_masked(self.argv))

    @property
    def by_hand(self) -> str:
        """`cd RUN_DIR && [VARS] camp env run ENV -- tool …` (paths inside the run folder made relative)."""
        argv = [self._relative(a) for a in _masked(self.tool_argv or self.argv)]
        env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in self.extra_env.items())
        run = f"camp env run {self.env} -- " if self.env else ""
        cd = f"cd {shlex.quote(self.cwd)} && " if self.cwd else ""
        return cd + (env + " " if env else "") + run + shlex.join(argv)

    def _relative(self, arg) -> str:
        s = str(arg)
        if self.cwd and os.path.isabs(s):
            try:
                rel = os.path.relpath(s, self.cwd)
            except ValueError:
                return s
            if not rel.startswith(".."):
                return rel
        return s


class Commands(list):
    """A list of ToolCommand that prints (and shows in JupyterLab) both forms of every step."""

    def __str__(self) -> str:
        lines = []
        for c in self:
            lines += [f"# {c.step} ({c.env or 'core'} env){' — ' + c.status if c.status else ''}",
                      f"#   camp ran:\n{c.ran}", "#   by hand (the tool's own command line):", c.by_hand, ""]
        return "\n".join(lines).rstrip()

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<p><b>{e(c.step)}</b> <small>({e(c.env or 'core')} env{', ' + e(c.status) if c.status else ''})</small>"
            f"<br>camp 运行的命令：<pre style='white-space:pre-wrap'>{e(c.ran)}</pre>"
            f"自己动手（工具自己的命令行）：<pre style='white-space:pre-wrap'>{e(c.by_hand)}</pre></p>"
            for c in self)
        return f"<div>{rows}</div>"


def read_job(job_dir: Path, step: str) -> ToolCommand | None:
    """The command a Job recorded in job_dir/job.json, or None when that step did not run."""
    try:
        info = json.loads((Path(job_dir) / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cmd = info.get("cmd") or []
    if not cmd:
        return None
    return ToolCommand(step=step, env=info.get("env"), argv=list(cmd), cwd=info.get("cwd"),
                       status=info.get("status", ""), extra_env=dict(info.get("extra_env") or {}))
