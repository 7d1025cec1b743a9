"""Homework on nbgrader: lessons as nbgrader source notebooks, released to students, handed in as one file,
graded in a sandbox in parallel, with feedback and a gradebook. See docs/homework.md.

    camp.homework.keep(name=value) (a lesson's exercises) · mark(nb) · release([src]) · submit(nb, student=…)
    · collect(folder) · grade(a, workers=N)
    · feedback(a) · gradebook(a)
"""

from camp.homework.authoring import mark
from camp.homework.grading import Limits
from camp.homework.layout import Course
from camp.homework.packing import collect, submit
from camp.homework.records import keep
from camp.homework.stage import feedback, grade, gradebook, release

__all__ = ["keep", "mark", "release", "submit", "collect", "grade", "feedback", "gradebook", "Limits", "Course"]
