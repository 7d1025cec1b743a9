"""`camp homework`: the public functions and the CLI, thin over nbgrader (which runs in subprocesses: see tasks.py).

    camp.homework.mark(nb)                    lesson author: hw:* tags → nbgrader source metadata
    camp.homework.release([src…])             nbgrader generate_assignment → release/<assignment>/
    camp.homework.submit(nb, student=…)       student: one zip with a manifest (offline)
    camp.homework.collect(folder)             TA: zips/notebooks → submitted/<student>/<assignment>/
    camp.homework.grade(assignment, workers=N) TA: sandboxed nbgrader autograde, parallel, resumable
    camp.homework.feedback(assignment)        TA: nbgrader's HTML feedback per student
    camp.homework.gradebook(assignment)       TA: CSV + HTML report with per-task scores and a chart
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, fields
from pathlib import Path

from camp.homework import authoring, reports
from camp.homework.grading import Limits, is_graded, pending
from camp.homework.layout import Course
from camp.runtime import config, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.stage import Stage, Step

_GRADE_LINE = re.compile(r"^\[grade\] (\d+)/(\d+) (\S+)(?: (\S+) (\S+))?")


def _course(course) -> Course:
    return course if isinstance(course, Course) else Course.at(course)


def _tasks_cmd(op: str, course: Course, *args: str) -> list[str]:
    return [sys.executable, "-m", "camp.homework.tasks", op, "--course", str(course.root), *args]


def _step(name: str, cmd: list[str], run_dir: Path, check=None, **kw) -> Step:
    return Step(name, cmd, run_dir / "jobs" / name.split()[-1], extra_env={"PYTHONPATH": config.pythonpath()},
                check=check, **kw)


# ------------------------------------------------------------------------------------------ release
def default_sources() -> list[Path]:
    """The lessons that carry exercises (nbgrader source notebooks), in course order."""
    return [nb for nb in sorted(config.notebooks_dir().glob("[0-9][0-9]_*.ipynb")) if authoring.is_source(nb)]


class ReleaseStage(Stage):
    name = "homework-release"

    def __init__(self, sources, course: Course):
        self.sources = [Path(s).absolute() for s in sources]
        self.course = course

    def validate(self) -> None:
        if not self.sources:
            raise CampError(t("没有带作业的课程笔记本 — 传入一个作业源（如 assets/homework/sample）",
                              "no lesson carries exercises yet — pass a source (e.g. assets/homework/sample)"))
        for src in self.sources:
            if not src.exists():
                raise CampError(t(f"没有 {src}", f"no such source: {src}"))

    def steps(self, run_dir):
        def released(job):
            missing = [s.stem for s in self.sources if not (self.course.release_dir / (s.name if s.is_dir()
                                                                                       else s.stem)).is_dir()]
            return f"no release folder for {', '.join(missing)}" if missing else None

        yield _step("nbgrader generate_assignment", _tasks_cmd("release", self.course, *map(str, self.sources)),
                    run_dir, released)

    def finish(self, run_dir, jobs):
        out = [self.course.release_dir / (s.name if s.is_dir() else s.stem) for s in self.sources]
        progress.current().say(t("学生版：", "student versions: ") + ", ".join(map(str, out)))
        return out


def release(sources=None, *, course=None, show=True) -> list[Path]:
    """Make the student versions (solutions stripped, hidden tests removed) with nbgrader; returns their folders."""
    course = _course(course)
    srcs = [Path(s) for s in sources] if sources else default_sources()
    return ReleaseStage(srcs, course).run(run_dir=course.camp_dir / "runs" / "release", show=show)


# ------------------------------------------------------------------------------------------ grade
def _grade_parser(line: str, p) -> None:
    m = _GRADE_LINE.match(line)
    if m:
        p.update(n=int(m.group(1)), total=int(m.group(2)))
        if m.group(4):
            p.update(last=f"{m.group(3)} {m.group(5)}")


class GradeStage(Stage):
    name = "homework-grade"

    def __init__(self, course: Course, assignment, *, workers, force, students, shard, limits: Limits):
        self.course, self.workers, self.force = course, workers, force
        self.assignment = assignment
        self.students, self.shard, self.limits = list(students or []), shard, limits

    def validate(self) -> None:
        from camp.agents import sandbox

        self.assignment = self.course.pick_assignment(self.assignment)
        if self.workers < 1:
            raise CampError("--workers must be at least 1")
        if self.limits.sandbox and sandbox.backend() != "bubblewrap":
            raise CampError(t("评分要在沙箱里运行学生代码，需要 bubblewrap — " + sandbox.INSTALL_HINT,
                              "grading runs students' code in a sandbox, which needs bubblewrap — "
                              + sandbox.INSTALL_HINT))
        if self.shard is not None:
            i, n = self.shard
            if not 0 <= i < n:
                raise CampError(f"--shard {i}/{n}: the index must be in 0..{n - 1}")
        known = set(self.course.submissions(self.assignment))
        unknown = [s for s in self.students if s not in known]
        if unknown:
            raise CampError(f"no submission of {self.assignment} from {', '.join(unknown)} in {self.course.submitted}")
        self.todo = pending(self.course, self.assignment, force=self.force, students=self.students,
                            shard=self.shard)

    def steps(self, run_dir):
        if not self.todo:
            return
        args = [self.assignment, "--workers", str(self.workers), "--limits", json.dumps(asdict(self.limits))]
        args += [a for s in self.todo for a in ("--student", s)]
        args += ["--force"] if self.force else []
        # only a run that graded everything writes the course's gradebook.db (a shard on a cluster leaves that
        # to `camp homework gradebook` once every shard is done)
        args += ["--sync"] if self.shard is None and not self.students else []

        def all_graded(job):
            left = [s for s in self.todo if not is_graded(self.course, self.assignment, s)]
            return f"{len(left)} submissions have no result: {', '.join(left[:5])}" if left else None

        yield _step("homework grade", _tasks_cmd("grade", self.course, *args), run_dir, all_graded,
                    parser=_grade_parser, total=len(self.todo), unit="submission",
                    desc=t(f"评分 {self.assignment}", f"grading {self.assignment}"))

    def finish(self, run_dir, jobs):
        return reports.write(self.course, self.assignment)


def grade(assignment: str | None = None, *, course=None, workers: int = 1, force: bool = False,
          students: list[str] | None = None, shard: tuple[int, int] | None = None, show=True,
          **limits) -> reports.Gradebook:
    """Autograde every collected submission of `assignment` in the sandbox, `workers` at a time; graded ones are
    skipped unless force. `limits`: cell_timeout, time_limit, memory_mb, max_procs, scratch_mb, read_only,
    sandbox (see camp.homework.grading.Limits). Returns the gradebook."""
    names = {f.name for f in fields(Limits)}
    bad = sorted(set(limits) - names)
    if bad:
        raise CampError(f"unknown grading limit {', '.join(bad)} — known: {', '.join(sorted(names))}")
    course = _course(course)
    stage = GradeStage(course, assignment, workers=workers, force=force, students=students, shard=shard,
                       limits=Limits(**limits))
    return stage.run(run_dir=course.camp_dir / "runs" / "grade", show=show)


# ------------------------------------------------------------------------------------------ feedback, gradebook
class FeedbackStage(Stage):
    name = "homework-feedback"

    def __init__(self, course: Course, assignment):
        self.course, self.assignment = course, assignment

    def validate(self) -> None:
        self.assignment = self.course.pick_assignment(self.assignment)

    def steps(self, run_dir):
        yield _step("nbgrader generate_feedback", _tasks_cmd("feedback", self.course, self.assignment), run_dir,
                    lambda job: None if self.pages() else "no feedback page was written")

    def pages(self) -> list[Path]:
        return sorted(self.course.feedback_dir.glob(f"*/{self.assignment}/*.html"))

    def finish(self, run_dir, jobs):
        return self.pages()


def feedback(assignment: str | None = None, *, course=None, show=True) -> list[Path]:
    """nbgrader's HTML feedback for every graded student (feedback/<student>/<assignment>/<notebook>.html)."""
    course = _course(course)
    return FeedbackStage(course, assignment).run(run_dir=course.camp_dir / "runs" / "feedback", show=show)


def gradebook(assignment: str | None = None, *, course=None, sync: bool = True, show=True) -> reports.Gradebook:
    """The CSV + HTML report (gradebook/<assignment>.csv/.html); with sync, the course's nbgrader gradebook.db
    is brought up to date first (results graded elsewhere — other machines, shards — included)."""
    course = _course(course)
    assignment = course.pick_assignment(assignment)
    from camp.homework.tasks import in_sync

    # formgrader's hand-entered scores come in through the sync too: run it unless nothing changed on either side
    if sync and not (in_sync(course, assignment) and course.db.stat().st_mtime_ns
                     <= (course.camp_dir / "manual" / f"{assignment}.synced.json").stat().st_mtime_ns):
        from camp.runtime.stage import run_step

        run_step(_step("homework sync", _tasks_cmd("sync", course, assignment), course.camp_dir / "runs" / "sync"),
                 progress.get(show))
    return reports.write(course, assignment)


# ------------------------------------------------------------------------------------------ CLI
def _limits(args) -> dict:
    out = {k: getattr(args, k) for k in ("cell_timeout", "time_limit", "memory_mb") if getattr(args, k) is not None}
    if args.allow_read:
        out["read_only"] = [str(Path(p).absolute()) for p in args.allow_read]
    if args.no_sandbox:
        out["sandbox"] = False
    return out


def cli_homework(args) -> int:
    from camp.homework import packing

    op = args.homework_command
    if op == "mark":
        return authoring.cli_mark(args)
    if op == "release":
        for folder in release(args.sources or None, course=args.course):
            print(folder)
        return 0
    if op == "submit":
        print(packing.submit(args.notebook, student=args.student, assignment=args.assignment, out=args.output))
        return 0
    if op == "collect":
        got = packing.collect(args.folder, course=args.course, assignment=args.assignment)
        print(got)
        return 0 if got.accepted or not got.rejected else 1
    if op == "grade":
        shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
        book = grade(args.assignment, course=args.course, workers=args.workers, force=args.force,
                     students=args.student, shard=shard, **_limits(args))
        print(book)
        print(f"\n{book.csv_path}\n{book.html_path}")
        return 0
    if op == "feedback":
        pages = feedback(args.assignment, course=args.course)
        print(t(f"{len(pages)} 份反馈：", f"{len(pages)} feedback pages: ") + str(Course.at(args.course).feedback_dir))
        return 0
    if op == "gradebook":
        book = gradebook(args.assignment, course=args.course)
        print(book)
        print(f"\n{book.csv_path}\n{book.html_path}")
        return 0
    raise CampError(f"unknown action {op}")
