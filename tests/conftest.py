"""Shared test set-up: tests run in the core env, offline, single-threaded, against the repo's .camp home."""

from __future__ import annotations

import os
import re
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


# ------------------------------------------------------------------ two workers (make test: pytest -n 2)
# The heavy tests are single-threaded (OMP_NUM_THREADS=1), so two pytest-xdist workers use both cores of the course
# machines. Each test file stays on one worker (its module fixtures are built once), except the lesson runs: each
# lesson's tests (executed, released, graded) form a unit of their own, so lessons spread over both workers and share
# one execution. Lesson 04 evaluates the model lesson 03 registers, so they share a unit. Units holding slow tests are
# queued first (longest first is what keeps two workers finishing together).
# A scheduler of our own rather than xdist_group marks: xdist 3.8.0's loadgroup renames item._nodeid, which pytest
# 9.2 no longer reads (its nodeid comes from item._id), so the marks group nothing.
_LESSON_FILES = ("tests/course/test_notebooks.py", "tests/course/test_homework.py")
_SAME_UNIT = {"04": "03"}


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    m = re.search(r"\[(\d\d)_\w+\]$", nodeid)
    if path in _LESSON_FILES and m:
        return "lesson-" + _SAME_UNIT.get(m.group(1), m.group(1))
    return path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: absent with -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByFileOrLesson(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByFileOrLesson(config, log)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    units = {item.nodeid: work_unit(item.nodeid) for item in items}
    heavy = {units[i.nodeid] for i in items if i.get_closest_marker("slow") or i.get_closest_marker("notebook")}
    first_seen: dict[str, int] = {}
    for n, item in enumerate(items):
        first_seen.setdefault(units[item.nodeid], n)
    # the order the units are handed out in (--no-loadscope-reorder); every worker computes the same one, as xdist
    # checks that their collections are identical
    items.sort(key=lambda i: (units[i.nodeid] not in heavy, first_seen[units[i.nodeid]]))
