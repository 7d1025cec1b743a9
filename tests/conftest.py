"""Shared test set-up: tests run in the core env, offline, single-threaded, against the repo's .camp home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nothing in the tests may reach a model hub, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Students see Chinese by default; the tests assert on the English words (CAMP_LANG=en) unless they test the Chinese
# UI itself (tests/ui, and the tests that set CAMP_LANG=zh).
os.environ.setdefault("CAMP_LANG", "en")


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running `python -m camp …` as a student would: camp importable, core env bin on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def tool_env_python(name: str) -> Path:
    """That tool env's python; creates the env first if it is missing or stale (minutes; `make test` pre-builds)."""
    from camp.runtime import envs

    envs.create(name, show=False)
    return envs.python(name)


@pytest.fixture(scope="session")
def tool_python():
    return tool_env_python
