"""Where camp keeps things. Stdlib only: imported by the CLI and by bootstrap before any env exists.

Layout under CAMP_HOME (default: `<checkout>/.camp`, else `~/.cache/camp`):
    envs/<name>/        tool environments camp created (venvs)
    envs.json           environments registered from elsewhere (conda envs on InternStudio)
    models/             download cache (ModelScope layout) and built/normalised models
    runs/<ts>-<name>/   one folder per Job: job.json + log.txt + the tool's outputs
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the `camp` package


def pythonpath(extra: str | None = None) -> str:
    """PYTHONPATH for a child process that must import this very camp package (servers, launchers)."""
    current = os.environ.get("PYTHONPATH", "") if extra is None else extra
    return os.pathsep.join(p for p in (str(PACKAGE_DIR.parent), current) if p)


def _checkout_root() -> Path | None:
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "assets").is_dir():
        return root
    return None


ROOT: Path | None = _checkout_root()


def project_root() -> Path:
    """The source checkout camp runs from; the course kit (assets/, notebooks/) lives there."""
    if ROOT is None:
        raise RuntimeError(
            "camp is installed without its course kit (assets/, notebooks/, environments/). "
            "Install it from a checkout: `git clone … && cd camp && pip install -e .`"
        )
    return ROOT


def assets_dir() -> Path:
    return project_root() / "assets"


def environments_dir() -> Path:
    return project_root() / "environments"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def home() -> Path:
    env = os.environ.get("CAMP_HOME")
    if env:
        p = Path(env).expanduser()
    elif ROOT is not None:
        p = ROOT / ".camp"
    else:
        p = Path.home() / ".cache" / "camp"
    return p


def envs_dir() -> Path:
    return home() / "envs"


def models_dir() -> Path:
    """Download cache and locally built models. CAMP_MODELS overrides (e.g. a big data disk)."""
    env = os.environ.get("CAMP_MODELS")
    return Path(env).expanduser() if env else home() / "models"


def runs_dir() -> Path:
    return home() / "runs"


# InternStudio dev machines mount the course models read-only here.
DEFAULT_SHARED_MODELS = ("/root/share/new_models", "/share/new_models")


def shared_model_dirs() -> list[Path]:
    """Folders searched for ready-made models before any download (CAMP_SHARED_MODELS, os.pathsep-separated)."""
    env = os.environ.get("CAMP_SHARED_MODELS")
    items = env.split(os.pathsep) if env is not None else list(DEFAULT_SHARED_MODELS)
    return [Path(i).expanduser() for i in items if i]


@contextlib.contextmanager
def file_lock(path: Path, waiting: str | None = None, *, busy: str | None = None):
    """Hold an exclusive lock on `path` (created) across processes: one builder/downloader/writer at a time.
    Others print `waiting` and block until it is free — or, given `busy`, are refused at once with CampError(busy).
    Not on POSIX: no lock (atomic renames still protect readers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                from camp.runtime.errors import CampError

                raise CampError(busy) from None
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
