"""Every course notebook: committed clean, parameters first, check cells last, and it runs under papermill."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from camp import course

NOTEBOOKS = course.notebooks()


def test_there_are_lessons_in_course_order():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:3] == ["00_overview", "01_setup", "02_chat_demo"]
    assert names == sorted(names)


def test_every_chain_lesson_is_a_notebook_and_a_readme_row():
    import re

    from camp import chain
    from tests.conftest import ROOT

    names = {p.stem for p in NOTEBOOKS}
    readme = dict(re.findall(r"^\| `(\d\d_\w+)` \| (.+?) \| .+ \|$", (ROOT / "README.md").read_text(), re.M))
    for link in chain.lessons():
        assert link.lesson in names, f"{link.key}: notebooks/{link.lesson}.ipynb is missing"
        assert readme.get(link.lesson) == link.title, f"README's row for {link.lesson} differs from chain.py"
    assert set(readme) == names, "the README's lesson table must list every notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "camp", "open on the course env's kernel (make setup installs it)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged `parameters`"
    assert "profile" in code[0].source
    for c in code:
        assert not c.outputs and c.execution_count is None, "commit notebooks without outputs"
    assert "assert" in code[-1].source and "camp.report" in code[-1].source, "end with check cells"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_on_cpu_tiny(path: Path, executed):
    row, out = executed(path.stem)  # shared with tests/course/test_homework.py: each lesson runs once
    assert row["status"] == "ok", row["error"]
    assert row["result"], "the check cells reported no result"
    done = nbformat.read(out, as_version=4)
    errors = [o for c in done.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary[0]["notebook"] == path.stem
