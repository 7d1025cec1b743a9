"""`camp course`: runs notebooks, collects each lesson's key result, fails loudly on a failing notebook."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from camp import course
from camp.runtime.errors import CampError
from tests.conftest import subprocess_env


@pytest.fixture
def lessons(tmp_path, monkeypatch):
    d = tmp_path / "notebooks"
    d.mkdir()
    params = new_code_cell("profile = 'auto'\nsteps = 1")
    params.metadata["tags"] = ["parameters"]
    good = new_notebook(cells=[params, new_code_cell("import camp\ncamp.report('steps', steps * 2)")])
    bad = new_notebook(cells=[params, new_code_cell("assert steps < 5, 'too many steps'")])
    nbformat.write(good, d / "00_good.ipynb")
    nbformat.write(bad, d / "01_bad.ipynb")
    nbformat.write(good, d / "scratch.ipynb")  # not numbered: not a lesson
    monkeypatch.setattr("camp.runtime.config.notebooks_dir", lambda: d)
    return d


def test_selection_and_order(lessons):
    assert [p.stem for p in course.notebooks()] == ["00_good", "01_bad"]
    assert [p.stem for p in course.notebooks(["01"])] == ["01_bad"]
    assert [p.stem for p in course.notebooks(["good"])] == ["00_good"]
    with pytest.raises(CampError, match="00_good"):
        course.notebooks(["07"])


def test_run_collects_results_and_failures(lessons, tmp_path):
    rows = course.run(out=tmp_path / "run", parameters={"steps": 21})
    good, bad = rows
    assert good["status"] == "ok" and good["result"] == {"steps": 42}
    assert bad["status"] == "failed" and "too many steps" in bad["error"]
    table = course.format_table(rows)
    assert "00_good" in table and "steps=42" in table and "too many steps" in table


def test_cli_exit_status_reflects_failures(lessons, tmp_path):
    code = ("import sys, camp.runtime.config as c, pathlib; c.notebooks_dir = lambda: pathlib.Path(sys.argv[1]); "
            "from camp.cli import main; sys.exit(main(['course', '--out', sys.argv[2], '-p', 'steps', '9'] "
            "+ sys.argv[3:]))")
    ok = subprocess.run([sys.executable, "-c", code, str(lessons), str(tmp_path / "a"), "00"],
                        capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "steps=18" in ok.stdout
    failing = subprocess.run([sys.executable, "-c", code, str(lessons), str(tmp_path / "b")],
                             capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert failing.returncode == 1
    assert "failed" in failing.stdout
