"""The course's Jupyter kernel: a kernelspec named `camp` inside the core env, so the lessons open on the course env
(their metadata names it) rather than on whatever "Python 3" a JupyterLab finds first.

`camp env create core` (and so `make setup`) installs it into the env's own prefix (share/jupyter/kernels/camp);
the JupyterLab and papermill of that env find it there. Nothing is written to the user's home.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from camp.runtime.errors import CampError

NAME = "camp"
DISPLAY_NAME = "Python 3 (camp 实战营)"


def spec_dir(prefix: str | Path) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / NAME


def installed(prefix: str | Path) -> bool:
    """True when the env at `prefix` has the kernelspec, pointing at its own python."""
    try:
        spec = json.loads((spec_dir(prefix) / "kernel.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    argv = spec.get("argv") or [""]
    return Path(argv[0]) == Path(prefix) / "bin" / "python"


def ensure(prefix: str | Path) -> Path:
    """Install the `camp` kernelspec into the env at `prefix` unless it is already there."""
    prefix = Path(prefix)
    if installed(prefix):
        return spec_dir(prefix)
    py = prefix / "bin" / "python"
    r = subprocess.run([str(py), "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", NAME,
                        "--display-name", DISPLAY_NAME], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not installed(prefix):
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise CampError(f"could not install the {NAME!r} Jupyter kernel into {prefix}: {last}")
    return spec_dir(prefix)


def name_for(python: str | Path) -> str:
    """The kernel to run notebooks on from `python`'s env: `camp` when that env has it, else `python3`."""
    prefix = Path(python).parent.parent
    return NAME if installed(prefix) else "python3"
