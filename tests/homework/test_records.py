"""What a lesson's exercise keeps from the student's run (camp.homework.keep) travels in the notebook's outputs and
comes back as variables when grading; grading runs the homework section of a lesson, not the lesson."""

from __future__ import annotations

import json

import pytest

from camp.homework import authoring, records
from camp.runtime.errors import CampError


def _code(source="", *tags, outputs=(), nbgrader=None):
    md = {"tags": list(tags)}
    if nbgrader:
        md["nbgrader"] = nbgrader
    return {"cell_type": "code", "metadata": md, "source": source, "outputs": list(outputs), "execution_count": None}


def test_keep_shows_the_values_and_carries_them_as_json(capsys):
    kept = records.Kept({"story": "从前有座山", "n": 5})
    bundle = kept._repr_mimebundle_()
    assert bundle[records.MIME] == {"story": "从前有座山", "n": 5}
    assert "story = \"从前有座山\"" in bundle["text/plain"]
    records.keep(ratio=1.5)  # outside a kernel: printed
    assert "ratio = 1.5" in capsys.readouterr().out


def test_keep_takes_json_data_only():
    import math

    with pytest.raises(TypeError, match="JSON data"):
        records.keep(model=object())
    with pytest.raises(ValueError, match="finite"):
        records.keep(x=math.nan)
    with pytest.raises(ValueError, match="at most"):
        records.keep(big="x" * (records.MAX_CHARS + 1))
    with pytest.raises(TypeError, match="at least one"):
        records.keep()
    with pytest.raises(ValueError, match="plain variable names"):
        records.keep(_secret=1)


def test_extract_reads_every_kept_value_later_ones_win():
    out = lambda d: {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "…", records.MIME: d}}  # noqa: E731
    nb = {"cells": [
        _code("a", outputs=[out({"story": "v1", "n": 1})]),
        {"cell_type": "markdown", "metadata": {}, "source": "x"},
        _code("b", outputs=[{"output_type": "stream", "name": "stdout", "text": "hi"}, out({"story": "v2"})]),
        _code("c", outputs=[out({"bad key": 1, "__builtins__": 2, "class": 3})]),  # not plain names: ignored
    ]}
    assert records.extract(nb) == {"story": "v2", "n": 1}


def test_restore_puts_the_values_back(tmp_path, capsys):
    (tmp_path / records.FILE).write_text(json.dumps({"tps1": 2.5, "ratio": 1.2}))
    ns: dict = {}
    assert records.restore(ns, tmp_path) == ["ratio", "tps1"]
    assert ns == {"tps1": 2.5, "ratio": 1.2}
    assert "restored" in capsys.readouterr().out
    assert records.restore({}, tmp_path / "nowhere") == []
    assert "nothing was kept" in capsys.readouterr().out


def test_the_recorded_tag_is_checked(tmp_path):
    def nb(*cells):
        path = tmp_path / "nb.ipynb"
        path.write_text(json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        return path

    ok = nb(_code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\ncamp.homework.keep(x=x)", "hw:solution",
                  "hw:recorded"), _code("assert x", "hw:tests=1"))
    assert [t.kind for t in authoring.mark(ok)] == ["solution", "tests"]
    with pytest.raises(CampError, match="cannot be hw:recorded"):
        authoring.mark(nb(_code("assert x", "hw:tests=1", "hw:recorded")))
    with pytest.raises(CampError, match="goes on a code cell"):
        authoring.mark(nb({"cell_type": "markdown", "metadata": {"tags": ["hw:recorded"]}, "source": "x"},
                          _code("assert 1", "hw:tests=1")))


def test_grading_runs_the_homework_section_not_the_lesson():
    pytest.importorskip("nbgrader")
    from camp.homework.sandboxed import outside_homework

    cells = [
        _code("profile = 'auto'", "parameters"),  # runs: the student's parameters
        _code("camp.finetune(...)"),  # the lesson: skipped
        {"cell_type": "markdown", "metadata": {"tags": ["hw:readonly"]}, "source": "## 作业"},
        _code("def f(): ...", nbgrader={"solution": True}),
        _code("student's own helper"),  # added inside the section: runs
        _code("assert f", "hw:tests=1"),
        _code("endpoint.stop()"),  # after the section: skipped
        _code("assert lesson_result"),  # the check cell: skipped
    ]
    assert [cells.index(c) for c in outside_homework(cells)] == [1, 6, 7]
    assert outside_homework([_code("x"), _code("y")]) == []  # not homework: nothing is skipped
