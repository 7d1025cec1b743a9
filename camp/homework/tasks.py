"""The nbgrader-side work, as a command the stage runs in a subprocess (so nbgrader is never imported into a
notebook kernel, and each run has a log):

    python -m camp.homework.tasks release  --course C SOURCE…       nbgrader generate_assignment, then checks
    python -m camp.homework.tasks grade    --course C A [--workers N] [--force] [--student S…] [--shard I/N]
    python -m camp.homework.tasks one      --course C A STUDENT      one submission, in this process
    python -m camp.homework.tasks sync     --course C A              results → the course's nbgrader gradebook.db
    python -m camp.homework.tasks feedback --course C A              nbgrader generate_feedback (HTML per student)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from camp.homework import authoring, records
from camp.homework.layout import Course, check_id, sha256
from camp.runtime.errors import CampError

STUB = "raises-exception"  # papermill/nbclient: an error in this cell does not stop the run


def _api(course: Course, db_url: str | None = None, **extra):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    c = course.nbgrader_config()
    if db_url:
        c.CourseDirectory.db_url = db_url
    for key, value in extra.items():
        section, name = key.split("__")
        setattr(c[section], name, value)
    return NbGraderAPI(config=Config(c))


def _check(outcome: dict, what: str) -> None:
    print(outcome.get("log") or "", outcome.get("error") or "", sep="\n", flush=True)  # into the Job's log
    if not outcome.get("success"):
        from camp.homework.grading import _last_error

        raise CampError(f"{what} failed: {_last_error((outcome.get('log') or '') + (outcome.get('error') or ''))}")


# ------------------------------------------------------------------------------------------ release
def release(course: Course, sources: list[Path]) -> list[str]:
    done = []
    for src in sources:
        src = src.absolute()
        folder = src if src.is_dir() else src.parent
        notebooks = sorted(folder.glob("*.ipynb")) if src.is_dir() else [src]
        aid = check_id(src.name if src.is_dir() else src.stem, "assignment")
        if not notebooks:
            raise CampError(f"{src} holds no notebook")
        for nb in notebooks:
            if not authoring.is_source(nb):
                raise CampError(f"{nb} has no graded cells — tag them (hw:tests=N …) and run `camp homework mark`")
            authoring.mark(nb, write=False)  # the tags and the metadata agree and are valid
        target = course.source / aid
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for nb in notebooks:
            shutil.copy2(nb, target / nb.name)
        if src.is_dir():  # the assignment's data files travel with it (students get them in the release)
            for f in folder.rglob("*"):
                rel = f.relative_to(folder)
                if f.is_file() and f.suffix != ".ipynb" and not any(p.startswith(".") for p in rel.parts):
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target / rel)
        _check(_api(course).generate_assignment(aid, force=True, create=True), f"nbgrader generate_assignment {aid}")
        # the gradebook as released: every submission is graded against its own copy of it (the sandboxed kernel
        # never sees it; only the grader reads it)
        snapshot = course.snapshot_path(aid)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        fresh = snapshot.with_name(f".{snapshot.name}.tmp")
        with sqlite3.connect(course.db) as src, sqlite3.connect(fresh) as dst:
            src.backup(dst)  # a consistent copy, even of a database someone is writing
        fresh.replace(snapshot)
        for nb in sorted((course.release_dir / aid).glob("*.ipynb")):
            _finish_release(nb, aid)
        done.append(aid)
        print(f"released {aid}: {course.release_dir / aid}", flush=True)
    return done


def _finish_release(path: Path, aid: str) -> None:
    """The student's copy: runs top to bottom under papermill (unanswered stubs and failing tests are marked
    `raises-exception`, which nbgrader's checksums do not cover), carries its assignment name, and holds no
    solution or hidden test (checked)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        md = cell.get("metadata", {})
        info = md.get("nbgrader", {})
        if cell.get("cell_type") == "code" and (info.get("solution") or info.get("grade") or records.is_recorded(cell)):
            tags = md.setdefault("tags", [])
            if STUB not in tags:
                tags.append(STUB)
        text = "".join(cell.get("source", ""))
        for marker in (*authoring.SOLUTION, *authoring.HIDDEN):
            if marker in text:
                raise CampError(f"the release {path} still contains {marker!r}: not handing it out")
    nb["metadata"]["camp_homework"] = {"assignment": aid, "notebook": path.stem}
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    nb["metadata"]["camp_homework"]["release"] = sha256(path)[:16]
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ sync, feedback
def sync(course: Course, assignment: str) -> int:
    """Copy every result into the course's gradebook.db (nbgrader's formgrader and feedback read it), and the
    scores TAs entered there by hand (formgrader) out into `.camp/manual/<assignment>.json` for the report."""
    from nbgrader.api import Gradebook, MissingEntry

    from camp.homework.grading import result_for
    from camp.runtime import markers

    n, manual, seen = 0, {}, {}
    with Gradebook(course.db_url) as gb:
        for student in course.submissions(assignment):
            r = result_for(course, assignment, student)
            if not r:
                continue
            seen[student] = course.result_path(assignment, student).stat().st_mtime_ns
            gb.update_or_create_student(student)
            ts = (course.submitted / student / assignment / "timestamp.txt")
            kwargs = {"timestamp": ts.read_text().strip()} if ts.is_file() and ts.read_text().strip() else {}
            gb.update_or_create_submission(assignment, student, **kwargs)
            for task in r.get("tasks", []):
                try:
                    grade = gb.find_grade(task["name"], task["notebook"], assignment, student)
                except MissingEntry:
                    continue
                grade.auto_score = task["score"]
                if grade.manual_score is None:  # a TA's grade stands
                    grade.needs_manual_grade = bool(task["needs_manual_grade"])
                else:
                    manual.setdefault(student, {})[task["name"]] = grade.manual_score
            gb.db.commit()
            n += 1
    folder = course.camp_dir / "manual"
    folder.mkdir(parents=True, exist_ok=True)
    markers.write_json(folder / f"{assignment}.json", manual)
    markers.write_json(folder / f"{assignment}.synced.json", seen)
    return n


def in_sync(course: Course, assignment: str) -> bool:
    """Whether gradebook.db already holds every result as it is now (nothing graded since the last sync)."""
    from camp.runtime import markers

    seen = markers.read_json(course.camp_dir / "manual" / f"{assignment}.synced.json")
    now = {}
    for student in course.submissions(assignment):
        path = course.result_path(assignment, student)
        if path.is_file():
            now[student] = path.stat().st_mtime_ns
    return bool(now) and now == seen


def feedback(course: Course, assignment: str) -> int:
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    from camp.homework.sandboxed import HideHiddenTests

    sync(course, assignment)
    graded = [s for s in course.submissions(assignment) if (course.autograded / s / assignment).is_dir()]
    if not graded:
        raise CampError(f"nothing graded yet for {assignment} — run `camp homework grade {assignment}` first")
    api = _api(course, GenerateFeedback__preprocessors=[GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor])
    _check(api.generate_feedback(assignment, force=True), f"nbgrader generate_feedback {assignment}")
    return len(graded)




# ------------------------------------------------------------------------------------------ the command
def main(argv: list[str] | None = None) -> int:
    from camp.homework.grading import Limits, batch, grade_one, pending

    p = argparse.ArgumentParser(prog="python -m camp.homework.tasks")
    sub = p.add_subparsers(dest="op", required=True)
    for name in ("release", "grade", "one", "sync", "feedback"):
        s = sub.add_parser(name)
        s.add_argument("--course", required=True)
        if name == "release":
            s.add_argument("sources", nargs="+")
        else:
            s.add_argument("assignment")
        if name == "one":
            s.add_argument("student")
        if name == "one":
            s.add_argument("--slot", type=int, default=0)
        if name in ("one", "grade"):
            s.add_argument("--limits", default="{}")
        if name == "grade":
            s.add_argument("--workers", type=int, default=1)
            s.add_argument("--force", action="store_true")
            s.add_argument("--student", action="append", default=[])
            s.add_argument("--shard", default=None)
            s.add_argument("--sync", action="store_true")
    args = p.parse_args(argv)
    # nbgrader runs `alembic` (its gradebook's schema tool) by name: this env's bin must come first on PATH
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    course = Course.at(args.course)
    try:
        if args.op == "release":
            release(course, [Path(s) for s in args.sources])
        elif args.op == "one":
            r = grade_one(course, args.assignment, args.student, Limits(**json.loads(args.limits)), slot=args.slot)
            print(json.dumps({k: r[k] for k in ("student", "status", "score")}), flush=True)
        elif args.op == "grade":
            shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
            todo = pending(course, args.assignment, force=args.force, students=args.student, shard=shard)
            batch(course, args.assignment, todo, Limits(**json.loads(args.limits)), workers=args.workers,
                  sync=args.sync)
        elif args.op == "sync":
            print(f"synced {sync(course, args.assignment)} results", flush=True)
        elif args.op == "feedback":
            print(f"feedback for {feedback(course, args.assignment)} submissions", flush=True)
    except CampError as exc:
        print(f"camp: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
