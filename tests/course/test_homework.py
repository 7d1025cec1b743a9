"""The lessons are homework: every lesson ends with a 基础作业 and a 进阶作业 part marked for nbgrader; the release
holds no solution and no hidden test; released lessons still run top to bottom under papermill; the executed
solution version of each lesson grades to full marks and the unanswered release to 0 — in the grading sandbox,
which runs only the homework section and the values the student's run kept."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from camp import course, homework
from camp.homework import authoring, grading, records
from camp.homework.layout import Course

LESSONS = course.notebooks()
# released lessons executed under papermill here: the quick ones (the others would repeat a fine-tune, an
# evaluation or a server run that the solution versions already prove in make course)
PAPERMILL = ["00_overview", "01_setup", "02_chat_demo"]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


# ------------------------------------------------------------------------------------------ the source notebooks
def test_every_lesson_carries_exercises():
    assert LESSONS and all(authoring.is_source(p) for p in LESSONS), \
        [p.stem for p in LESSONS if not authoring.is_source(p)]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_exercises_are_marked_and_complete(path: Path, tmp_path):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    tasks = authoring.mark(copy)
    assert copy.read_bytes() == path.read_bytes(), f"run `camp homework mark notebooks/{path.name}`"
    cells = _cells(path)
    heads = {part: next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "hw:readonly" in _tags(c)
                         and _src(c).startswith(f"### {part}")), None) for part in ("基础作业", "进阶作业")}
    assert None not in heads.values(), f"a 基础作业 and a 进阶作业 part: {heads}"
    tests = [i for i, c in enumerate(cells) if any(t.startswith("hw:tests=") for t in _tags(c))]
    assert any(heads["基础作业"] < i < heads["进阶作业"] for i in tests) and any(i > heads["进阶作业"] for i in tests)
    assert any(t.hidden for t in tasks), "hidden tests check the edge cases"
    homework_cells = [i for i, c in enumerate(cells) if any(t.startswith("hw:") for t in _tags(c))]
    checks = max(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert max(homework_cells) < checks, "the exercises come before the lesson's check cells"
    for c in cells:
        if records.is_recorded(c):
            tail = _src(c).split("### END SOLUTION")[-1]
            assert "camp.homework.keep(" in tail, f"{c['id']}: a recorded cell keeps its values after the solution"


# ------------------------------------------------------------------------------------------ released
@pytest.fixture(scope="session")  # once per test process: under xdist a worker runs several lessons' groups
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesson-course")
    homework.release(LESSONS, course=root, show=False)
    return Course.at(root)


def _hidden_and_solution_lines(path: Path) -> list[str]:
    """Every substantial line between SOLUTION or HIDDEN TESTS markers of the source that the public part of the
    lesson does not also show (`chat.reset()` in a solution is no secret when the lesson's own cells call it)."""
    secret, public, inside = [], set(), False
    for cell in _cells(path):
        for line in _src(cell).splitlines():
            if re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", line):
                inside = True
            elif re.search(r"END (SOLUTION|HIDDEN TESTS)", line):
                inside = False
            elif inside and len(line.strip()) >= 12:
                secret.append(line.strip())
            elif not inside:
                public.add(line.strip())
    public_text = "\n".join(public)
    return [line for line in secret if line not in public_text]


@pytest.mark.integration
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_release_holds_no_solution_and_no_hidden_test(released, path: Path):
    out = released.release_dir / path.stem / path.name
    text = out.read_text(encoding="utf-8")
    secret = _hidden_and_solution_lines(path)
    assert secret, "nothing to hide?"
    leaked = [line for line in secret if json.dumps(line, ensure_ascii=False)[1:-1] in text]
    assert not leaked, leaked[:5]
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    cells = _cells(out)
    assert "parameters" in _tags(next(c for c in cells if c["cell_type"] == "code"))
    stubs = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c["cell_type"] == "code"]
    assert stubs and all("raise NotImplementedError()" in _src(c) and "raises-exception" in _tags(c) for c in stubs)


@pytest.mark.notebook
@pytest.mark.parametrize("stem", PAPERMILL)
def test_released_lesson_runs_top_to_bottom(released, stem, tmp_path):
    import papermill as pm

    nb = released.release_dir / stem / f"{stem}.ipynb"
    out = tmp_path / nb.name
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")  # `!camp …` cells
    with pytest.raises(pm.PapermillExecutionError):  # an unanswered exercise fails the run at the end, as it should
        pm.execute_notebook(str(nb), str(out), parameters={"profile": "cpu-tiny"}, cwd=str(tmp_path),
                            kernel_name="python3", progress_bar=False)
    done = nbformat.read(out, as_version=4)
    code = [c for c in done.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every cell ran"
    failed = [c for c in code if any(o.output_type == "error" for o in c.outputs)]
    assert failed and all("raises-exception" in c.metadata.get("tags", []) for c in failed), \
        [c.source[:80] for c in failed if "raises-exception" not in c.metadata.get("tags", [])]
    assert "camp.report" in code[-1].source and not failed.count(code[-1]), "the lesson's own checks pass"


# ------------------------------------------------------------------------------------------ graded
def _answered(release_nb: Path, executed_nb: Path) -> dict:
    """The released notebook as a student who did everything hands it in: the solutions written into the answer
    cells, and the recorded cells' outputs (what `keep` stored) from the run."""
    nb = json.loads(release_nb.read_text(encoding="utf-8"))
    ran = {c["id"]: c for c in _cells(executed_nb)}
    for cell in nb["cells"]:
        src = ran.get(cell["id"])
        if src is None:
            continue
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell["source"] = "\n".join(line for line in _src(src).splitlines() if "### " not in line
                                       or "SOLUTION" not in line)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = src.get("outputs", []), src.get("execution_count")
    return nb


@pytest.mark.notebook
@pytest.mark.integration
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_solution_grades_full_and_unanswered_grades_zero(released, executed, path: Path, tmp_path):
    row, executed_nb = executed(path.stem)
    assert row["status"] == "ok", row["error"]
    aid = path.stem
    release_nb = released.release_dir / aid / path.name
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    full = _answered(release_nb, executed_nb)
    assert records.extract(full), "the solution run kept nothing"
    (inbox / f"solved__{aid}.ipynb").write_text(json.dumps(full, ensure_ascii=False), encoding="utf-8")
    shutil.copy(release_nb, inbox / f"blank__{aid}.ipynb")
    got = homework.collect(inbox, course=released)
    assert len(got.accepted) == 2, got
    homework.grade(aid, course=released, workers=2, show=False)
    solved = grading.result_for(released, aid, "solved")
    blank = grading.result_for(released, aid, "blank")
    wrong = {t["name"]: t["reason"] for t in solved["tasks"] if t["kind"] == "tests" and t["score"] != t["max"]}
    assert solved["status"] == "graded" and not wrong and solved["score"] == solved["auto_max"] > 0, wrong
    assert blank["status"] == "graded" and blank["score"] == 0, blank["tasks"]
    assert all(t["reason"] for t in blank["tasks"] if t["kind"] == "tests"), "each failed test says why"
