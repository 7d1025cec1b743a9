"""Lesson authors' helper: hw:* tags → nbgrader metadata, with wrong tags named by cell; and the hand-in file."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from camp.homework import authoring, packing
from camp.runtime.errors import CampError
from tests.conftest import ROOT

SAMPLE = ROOT / "assets" / "homework" / "sample" / "sample.ipynb"


def _nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _cell(kind, source, *tags, cid="c"):
    return {"cell_type": kind, "id": cid, "metadata": {"tags": list(tags)}, "source": source,
            **({"outputs": [], "execution_count": None} if kind == "code" else {})}


def test_the_committed_sample_is_marked_and_marking_is_idempotent(tmp_path):
    copy = tmp_path / "s.ipynb"
    shutil.copy(SAMPLE, copy)
    tasks = authoring.mark(copy)
    assert copy.read_text(encoding="utf-8") == SAMPLE.read_text(encoding="utf-8")  # nothing left to write
    assert sum(t.points for t in tasks) == 8
    assert [t.grade_id for t in tasks if t.kind == "tests" and t.hidden] == [
        "count_chars_tests", "to_messages_more", "accuracy_tests"]
    cells = {c["metadata"]["nbgrader"]["grade_id"]: c for c in json.loads(copy.read_text())["cells"]
             if "nbgrader" in c["metadata"]}
    assert cells["count_chars_tests"]["metadata"]["nbgrader"] == {
        "grade": True, "grade_id": "count_chars_tests", "locked": True, "points": 2.0, "schema_version": 3,
        "solution": False, "task": False}
    assert cells["count_chars_tests"]["metadata"]["editable"] is False
    assert cells["answer"]["metadata"]["nbgrader"]["solution"] and cells["answer"]["metadata"]["nbgrader"]["grade"]
    assert not cells["count_chars"]["metadata"]["nbgrader"]["locked"]


@pytest.mark.parametrize("cells, message", [
    ([_cell("code", "x = 1", "hw:solution")], "between '### BEGIN SOLUTION'"),
    ([_cell("code", "assert 1", "hw:tests=0")], "positive number of points"),
    ([_cell("markdown", "hi", "hw:tests=1")], "hw:tests goes on a code cell"),
    ([_cell("code", "### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS", "hw:readonly")],
     "hidden tests belong in a hw:tests cell"),
    ([_cell("code", "assert 1", "hw:tests=1", "hw:id=t", cid="a"), _cell("code", "assert 2", "hw:tests=1", "hw:id=t",
                                                                       cid="b")], "used twice"),
    ([_cell("code", "assert 1", "hw:tests=1", "hw:readonly")], "exclude each other"),
    ([_cell("markdown", "just prose", "hw:readonly")], "no graded cell"),
])
def test_wrong_tags_are_named(tmp_path, cells, message):
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(_nb(*cells)))
    with pytest.raises(CampError, match=message.replace("(", r"\(")):
        authoring.mark(path)


def test_removing_a_tag_makes_the_cell_ordinary_again(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = _nb(_cell("code", "assert 1", "hw:tests=1", cid="t"), _cell("markdown", "read me", "hw:readonly", cid="r"))
    path.write_text(json.dumps(nb))
    authoring.mark(path)
    nb = json.loads(path.read_text())
    nb["cells"][1]["metadata"]["tags"] = []
    path.write_text(json.dumps(nb))
    authoring.mark(path)
    cell = json.loads(path.read_text())["cells"][1]
    assert "nbgrader" not in cell["metadata"] and "editable" not in cell["metadata"]


def test_submit_packs_one_file_with_a_manifest(tmp_path):
    nb = json.loads(SAMPLE.read_text(encoding="utf-8"))
    nb["metadata"]["camp_homework"] = {"assignment": "sample", "notebook": "sample", "release": "abc"}
    path = tmp_path / "my work.ipynb"
    path.write_text(json.dumps(nb))
    out = packing.submit(path, student="2024001", out=tmp_path)
    assert out.name == "2024001__sample.zip"
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert sorted(z.namelist()) == ["manifest.json", "sample.ipynb"]
    assert manifest["student"] == "2024001" and manifest["assignment"] == "sample" and manifest["release"] == "abc"
    assert manifest["files"]["sample.ipynb"] == packing.sha256(path)
    assert manifest["format"] == "camp-homework-1" and manifest["camp_version"]


@pytest.mark.parametrize("student", ["", "../x", "a b", "学号", "x" * 65, "-lead"])
def test_submit_refuses_bad_student_ids(tmp_path, student, monkeypatch):
    monkeypatch.setenv("CAMP_LANG", "en")
    with pytest.raises(CampError, match="not valid"):
        packing.submit(SAMPLE, student=student, out=tmp_path)
