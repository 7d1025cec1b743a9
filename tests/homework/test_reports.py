"""The gradebook report and the batch's bookkeeping (which submissions a run or a shard grades), from result files
alone — no nbgrader, no kernel."""

from __future__ import annotations

import csv

from camp.homework import grading, reports
from camp.homework.layout import Course, tree_hash
from camp.runtime import markers


def _course(tmp_path, students, graded=()):
    course = Course.at(tmp_path / "course")
    for s in students:
        sub = course.submitted / s / "hw1"
        sub.mkdir(parents=True)
        (sub / "hw1.ipynb").write_text('{"cells": []}' + s)
    for s, score in graded:
        tasks = [{"notebook": "hw1", "name": "t1", "max": 2.0, "kind": "tests", "score": min(score, 2.0),
                  "needs_manual_grade": False, "reason": None if score >= 2 else "AssertionError"},
                 {"notebook": "hw1", "name": "t2", "max": 3.0, "kind": "tests", "score": max(0.0, score - 2),
                  "needs_manual_grade": False, "reason": None},
                 {"notebook": "hw1", "name": "essay", "max": 1.0, "kind": "answer", "score": None,
                  "needs_manual_grade": True, "reason": None}]
        grading.save_result(course, {"student": s, "assignment": "hw1", "status": "graded", "tasks": tasks,
                                     "notes": [], "reason": None, "grader": grading.GRADER_VERSION,
                                     "submission": tree_hash(course.submitted / s / "hw1"),
                                     **grading.totals(tasks)})
    return course


def test_csv_and_html_list_every_student_with_per_task_scores(tmp_path):
    course = _course(tmp_path, ["ann", "bob", "cy", "dee"], graded=[("ann", 5.0), ("bob", 1.0), ("cy", 5.0)])
    (course.camp_dir / "manual").mkdir(parents=True)
    markers.write_json(course.camp_dir / "manual" / "hw1.json", {"ann": {"essay": 1.0}})  # formgrader's
    book = reports.write(course, "hw1")
    with open(book.csv_path, encoding="utf-8-sig") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["ann", "bob", "cy", "dee"]
    assert (rows["ann"]["score"], rows["ann"]["t1 (/2)"], rows["ann"]["essay (/1)"]) == ("6", "2", "1")
    assert rows["ann"]["needs_manual_grade_points"] == "0" and rows["cy"]["needs_manual_grade_points"] == "1"
    assert rows["bob"]["score"] == "1" and "t1: AssertionError" in rows["bob"]["reasons"]
    assert rows["dee"]["status"] == "pending"
    page = book.html_path.read_text(encoding="utf-8")
    assert page.count("<rect") == 7  # one bar per whole score 0..6
    assert "3 graded of 4" in page


def test_histogram_counts_students_per_score():
    svg = reports.histogram_svg([0, 2, 2, 7], 7)
    assert svg.count("<rect") == 8
    assert ">2</text>" in svg  # two students at score 2


def test_pending_skips_graded_and_regrades_a_changed_submission(tmp_path):
    course = _course(tmp_path, ["a", "b", "c", "d", "e"], graded=[("a", 5.0), ("b", 5.0)])
    assert grading.pending(course, "hw1") == ["c", "d", "e"]
    assert grading.pending(course, "hw1", force=True) == ["a", "b", "c", "d", "e"]
    (course.submitted / "a" / "hw1" / "hw1.ipynb").write_text('{"cells": [], "changed": 1}')
    assert grading.pending(course, "hw1") == ["a", "c", "d", "e"]
    # shards split the whole class by position, whatever is graded already: together they cover it once
    shards = [grading.pending(course, "hw1", force=True, shard=(i, 2)) for i in range(2)]
    assert shards == [["a", "c", "e"], ["b", "d"]]
    assert grading.pending(course, "hw1", shard=(1, 2)) == ["d"]
