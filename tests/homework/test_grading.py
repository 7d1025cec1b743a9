"""End to end on CPU: release the sample assignment with nbgrader, hand in the fixture class of submissions (honest,
partial, empty, looping, tampering, peeking, escaping, faking, crashing), grade them in the sandbox — first a
batch that is killed part-way, then the resumed batch with 2 workers — and check every score, reason, the
feedback pages and the gradebook."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camp import homework
from camp.homework import grading
from tests.conftest import ROOT, subprocess_env
from tests.homework import submissions

pytestmark = pytest.mark.integration

SAMPLE = ROOT / "assets" / "homework" / "sample"
LIMITS = {"cell_timeout": 8, "time_limit": 120, "scratch_mb": 32}
# Text that exists only in the solutions and in the hidden tests of the sample.
SOLUTION_TEXT = ["isspace", "zip(predictions, answers, strict=True)", 'record["system"]', "批处理"]
HIDDEN_TEXT = ["BEGIN HIDDEN", "书生·浦语 InternLM2", 'count_chars("a\\tb\\nc  d")', "你是书生", "accuracy(*bad)"]


@pytest.fixture(autouse=True, scope="module")
def _needs_bubblewrap():
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed — `make sandbox-deps` installs it")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    homework.release([SAMPLE], course=root, show=False)
    return root


@pytest.fixture(scope="module")
def fixtures(course):
    subs = submissions.build(course / "release" / "sample" / "sample.ipynb", course)
    inbox = course.parent / "inbox"
    inbox.mkdir()
    work = course.parent / "students"
    work.mkdir()
    for student, sub in subs.items():
        nb = work / f"{student}.ipynb"
        nb.write_text(json.dumps(sub["nb"], ensure_ascii=False))
        if student == "s03_empty":  # a plain notebook, named <student>__<assignment>.ipynb
            shutil.copy(nb, inbox / f"{student}__sample.ipynb")
        else:
            homework.submit(nb, student=student, out=inbox)
    return subs, inbox


@pytest.fixture(scope="module")
def graded(course, fixtures):
    subs, inbox = fixtures
    got = homework.collect(inbox, course=course)
    assert sorted(e["student"] for e in got.accepted) == sorted(subs) and not got.rejected, got
    # a batch killed part-way through …
    proc = subprocess.Popen(
        [sys.executable, "-m", "camp", "homework", "grade", "sample", "--course", str(course), "--workers", "1",
         "--cell-timeout", str(LIMITS["cell_timeout"])],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = course / ".camp" / "results" / "sample"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.stem: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 2 <= len(first) < len(subs), first
    # … resumes: what was graded stays, the rest is graded with 2 workers
    book = homework.grade("sample", course=course, workers=2, show=False, **LIMITS)
    kept = {p.stem: p.stat().st_mtime_ns for p in results.glob("*.json") if p.stem in first}
    return book, first, kept


def _text(path: Path) -> str:
    """Everything in a notebook a student could read: the raw file and its cells' sources as written."""
    raw = path.read_text(encoding="utf-8")
    return raw + "\n".join("".join(c["source"]) for c in json.loads(raw)["cells"])


def test_release_has_no_solutions_or_hidden_tests(course):
    released = _text(course / "release" / "sample" / "sample.ipynb")
    source = _text(SAMPLE / "sample.ipynb")
    for text in SOLUTION_TEXT + HIDDEN_TEXT:
        assert text in source, text  # the check is meaningful
        assert text not in released, f"the release leaks {text!r}"
    assert "BEGIN SOLUTION" not in released and "raise NotImplementedError()" in released


def test_release_runs_top_to_bottom_under_papermill(course, tmp_path):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    # every cell runs; papermill then reports the unanswered exercises' errors (as it should)
    with pytest.raises(pm.PapermillExecutionError, match="NotImplementedError"):
        pm.execute_notebook(str(course / "release" / "sample" / "sample.ipynb"), str(out),
                            parameters={"story_limit": 50}, kernel_name="python3", progress_bar=False,
                            cwd=str(tmp_path))
    import nbformat

    nb = nbformat.read(str(out), as_version=4)
    assert "作业完成 / done (story_limit=50)" in json.dumps(nb.cells[-1].outputs, ensure_ascii=False)
    errors = [o.ename for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert "NotImplementedError" in errors  # the unanswered stubs raised, and the run went on


def test_source_solutions_pass_their_own_tests(tmp_path):
    import papermill as pm

    nb = pm.execute_notebook(str(SAMPLE / "sample.ipynb"), str(tmp_path / "solved.ipynb"),
                             parameters={"story_limit": 7}, kernel_name="python3", progress_bar=False)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_each_submission_gets_its_exact_score_and_reason(course, fixtures, graded):
    subs, _ = fixtures
    book, _, _ = graded
    for student, sub in subs.items():
        r = grading.result_for(homework.Course.at(course), "sample", student)
        assert r["status"] == "graded", (student, r.get("reason"))
        scores = {t["name"]: t["score"] for t in r["tasks"] if t["kind"] == "tests"}
        assert scores == sub["expect"], (student, scores, r)
        assert r["score"] == sum(sub["expect"].values()) and r["auto_max"] == 7
        said = r["notes"] + [f"{t['name']}: {t['reason']}" for t in r["tasks"] if t["reason"]]
        for text in sub["says"]:
            assert any(text in line for line in said), (student, text, said)
        graded_nb = json.loads((course / "autograded" / student / "sample" / "sample.ipynb").read_text("utf-8"))
        printed = json.dumps([c.get("outputs", []) for c in graded_nb["cells"]], ensure_ascii=False)
        if "output" in sub:
            assert sub["output"] in printed, (student, printed)
        assert "WROTE" not in printed and "leaked [b" not in printed, (student, printed)
        # the written answer waits for a TA; left blank, nbgrader scores it 0 itself
        answer = next(t for t in r["tasks"] if t["name"] == "answer")
        assert answer["max"] == 1 and answer["needs_manual_grade"] == (student != "s03_empty"), (student, answer)


def test_sandbox_left_the_course_untouched(course, graded):
    assert not (Path("/usr/pwned.txt")).exists()
    forged = grading.result_for(homework.Course.at(course), "sample", "s07_escape")
    assert forged["score"] == 7 and forged["tasks"]  # written by the grader, not the '{"score": 7}' it tried
    assert not list((course / ".camp" / "grading").glob("*/*.tmp-*")), "work folders left behind"


def test_killed_batch_resumed_without_regrading(course, fixtures, graded):
    subs, _ = fixtures
    _, first, kept = graded
    assert kept == first  # graded before the kill: not graded again
    assert sorted(p.stem for p in (course / ".camp" / "results" / "sample").glob("*.json")) == sorted(subs)
    # a rerun grades nothing
    t0 = time.time()
    homework.grade("sample", course=course, workers=2, show=False, **LIMITS)
    assert {p.stem: p.stat().st_mtime_ns for p in (course / ".camp" / "results" / "sample").glob("*.json")
            if p.stem in first} == first
    assert time.time() - t0 < 60  # no kernel was started (generous: the machine is shared)


def test_gradebook_csv_lists_every_student(course, fixtures, graded):
    subs, _ = fixtures
    book = homework.gradebook("sample", course=course, show=False)
    with open(book.csv_path, encoding="utf-8-sig") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(subs)
    for student, sub in subs.items():
        assert float(rows[student]["score"]) == sum(sub["expect"].values())
        assert rows[student]["count_chars_tests (/2)"] == f"{sub['expect']['count_chars_tests']:g}"
        assert rows[student]["needs_manual_grade_points"] == ("0" if student == "s03_empty" else "1")
    page = book.html_path.read_text(encoding="utf-8")
    assert "<svg" in page and "s09_crash" in page
    # the course's own nbgrader gradebook has them too (formgrader, nbgrader export)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission("sample", "s01_full").score == 7
        assert gb.find_submission("sample", "s04_loop").score == 5


def test_feedback_per_student_hides_the_hidden_tests(course, fixtures, graded):
    subs, _ = fixtures
    pages = homework.feedback("sample", course=course, show=False)
    assert sorted(p.parts[-3] for p in pages) == sorted(subs)
    crash = (course / "feedback" / "s09_crash" / "sample" / "sample.html").read_text(encoding="utf-8")
    assert "the kernel died" in crash
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for hidden in ("书生·浦语 InternLM2", "你是书生", "accuracy(*bad)"):
            assert hidden not in text, (page, hidden)


def test_collect_rejects_bad_files_and_keeps_the_newest(course, fixtures, tmp_path):
    subs, inbox = fixtures
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("hi")
    (bad / "bad id!__sample.ipynb").write_text("{}")
    shutil.copy(inbox / "s01_full__sample.zip", bad / "s01_full__sample.zip")
    import zipfile

    with zipfile.ZipFile(bad / "tampered.zip", "w") as z, zipfile.ZipFile(inbox / "s02_partial__sample.zip") as src:
        for name in src.namelist():
            data = src.read(name)
            z.writestr(name, data + b" " if name.endswith(".ipynb") else data)
    with zipfile.ZipFile(bad / "slip.zip", "w") as z:
        z.writestr("../../escape.ipynb", "{}")
    course_copy = tmp_path / "c2"
    shutil.copytree(course / "release", course_copy / "release")
    shutil.copytree(course / ".camp" / "released", course_copy / ".camp" / "released")
    got = homework.collect(bad, course=course_copy)
    reasons = {r["file"]: r["reason"] for r in got.rejected}
    assert [e["student"] for e in got.accepted] == ["s01_full"]
    assert "not a .zip or .ipynb" in reasons["notes.txt"]
    assert "does not match its hash" in reasons["tampered.zip"]
    assert "unsafe path" in reasons["slip.zip"]
    assert "not valid" in reasons["bad id!__sample.ipynb"]
    assert not (tmp_path / "escape.ipynb").exists()
