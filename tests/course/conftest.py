"""Each lesson runs once per test session (cpu-tiny, papermill): the notebook tests and the homework tests share
the executed notebooks instead of running the lessons twice."""

from __future__ import annotations

import pytest

from camp import course


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """executed(stem) -> (the summary row, the executed notebook's path); runs the lesson on first use."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("lessons")

    def run(stem: str):
        if stem not in cache:
            out = folder / stem
            rows = course.run([stem], profile="cpu-tiny", out=out)
            cache[stem] = (rows[0], out / f"{stem}.ipynb")
        return cache[stem]

    return run
