"""Turn a lesson notebook into an nbgrader *source* notebook from cell tags a lesson author sets in JupyterLab
(Property Inspector → Cell Tags), so nobody edits nbgrader's metadata by hand:

    hw:solution        code the student writes; the answer goes between `### BEGIN SOLUTION` / `### END SOLUTION`
    hw:tests=N         an autograder test cell worth N points (read-only); hidden parts between
                       `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` are removed from the student's copy
    hw:answer=N        a markdown answer graded by hand, worth N points (reference answer inside the SOLUTION markers)
    hw:readonly        an instruction cell the student cannot edit or delete
    hw:id=NAME         the cell's name in the gradebook (default: derived from the cell id); keep it stable
    hw:recorded        (code, alone or with hw:solution / hw:readonly) needs the lesson's models or tools: grading
                       does not run it but restores what it kept with camp.homework.keep (see records.py)

`mark()` writes nbgrader's metadata (schema 3) from these tags and checks the result; it is idempotent. See
docs/homework.md. Stdlib + nbformat.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from camp.runtime.errors import CampError

# nbgrader finds its markers anywhere in a line (`### BEGIN SOLUTION` is the usual spelling): so must we, also in
# prose — a read-only cell that merely mentions them is an error for nbgrader too
SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_TAG = re.compile(r"^hw:(solution|readonly|tests|answer|id|recorded)(?:=(.+))?$")


@dataclass
class Task:
    grade_id: str
    kind: str  # "solution" | "tests" | "answer" | "readonly"
    points: float = 0.0
    hidden: bool = False


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for tag in cell.get("metadata", {}).get("tags", []):
        m = _TAG.match(tag)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _points(value: str | None, cell_no: int, tag: str) -> float:
    try:
        points = float(value or "")
    except ValueError:
        points = -1.0
    if points <= 0:
        raise CampError(f"cell {cell_no}: tag hw:{tag}={value} needs a positive number of points, e.g. hw:{tag}=2")
    return points


def tasks_of(nb: dict) -> list[tuple[int, Task]]:
    """(cell index, Task) for every tagged cell, in order; raises CampError for a wrong tag set."""
    found, ids = [], set()
    for i, cell in enumerate(nb.get("cells", [])):
        tags = _tags(cell)
        kinds = [k for k in ("solution", "tests", "answer", "readonly") if k in tags]
        if "recorded" in tags:
            if cell.get("cell_type") != "code":
                raise CampError(f"cell {i}: hw:recorded goes on a code cell (one that calls camp.homework.keep)")
            if "tests" in kinds or "answer" in kinds:
                raise CampError(f"cell {i}: a hw:tests / hw:answer cell cannot be hw:recorded — grading must run "
                                f"it; keep the values in the cell before it")
        if not kinds:
            if "id" in tags:
                raise CampError(f"cell {i}: hw:id without hw:solution / hw:tests / hw:answer / hw:readonly")
            continue
        if len(kinds) > 1:
            raise CampError(f"cell {i}: tags {', '.join('hw:' + k for k in kinds)} exclude each other — keep one")
        kind = kinds[0]
        grade_id = tags.get("id") or f"{kind}-{cell.get('id') or i}"
        if not re.match(r"^[A-Za-z0-9_-]+$", grade_id):
            raise CampError(f"cell {i}: hw:id={grade_id!r} may use only letters, digits, _ and -")
        if grade_id in ids:
            raise CampError(f"cell {i}: hw:id={grade_id!r} is used twice — every graded cell needs its own name")
        ids.add(grade_id)
        src = _source(cell)
        if kind == "tests":
            if cell.get("cell_type") != "code":
                raise CampError(f"cell {i}: hw:tests goes on a code cell")
            task = Task(grade_id, kind, _points(tags["tests"], i, "tests"), hidden=HIDDEN[0] in src)
        elif kind == "answer":
            if cell.get("cell_type") != "markdown":
                raise CampError(f"cell {i}: hw:answer goes on a markdown cell (code answers: hw:solution + hw:tests)")
            task = Task(grade_id, kind, _points(tags["answer"], i, "answer"))
        else:
            task = Task(grade_id, kind)
        if kind == "solution" and cell.get("cell_type") != "code":
            raise CampError(f"cell {i}: hw:solution goes on a code cell (written answers: hw:answer=N)")
        if kind in ("solution", "answer") and (SOLUTION[0] not in src or SOLUTION[1] not in src):
            raise CampError(f"cell {i} ({grade_id}): put the reference answer between '### BEGIN SOLUTION' and "
                            f"'### END SOLUTION' lines — the student's copy gets a stub there")
        if kind != "tests" and HIDDEN[0] in src:
            raise CampError(f"cell {i} ({grade_id}): hidden tests belong in a hw:tests cell only")
        if kind in ("tests", "readonly") and SOLUTION[0] in src:
            raise CampError(f"cell {i} ({grade_id}): a solution region in a read-only cell — tag it hw:solution")
        if (HIDDEN[0] in src) != (HIDDEN[1] in src):
            raise CampError(f"cell {i} ({grade_id}): {HIDDEN[0]!r} and {HIDDEN[1]!r} must come in pairs")
        found.append((i, task))
    return found


def _metadata(task: Task) -> dict:
    md = {"grade": task.kind in ("tests", "answer"), "grade_id": task.grade_id,
          "locked": task.kind in ("tests", "readonly"), "schema_version": 3,
          "solution": task.kind in ("solution", "answer"), "task": False}
    if md["grade"]:
        md["points"] = task.points
    return md


def mark(notebook: str | os.PathLike, *, write: bool = True) -> list[Task]:
    """Write nbgrader's metadata into `notebook` from its hw:* tags (see the module docstring); returns the tasks.
    Raises CampError naming the cell when a tag is wrong or there is nothing to grade."""
    path = Path(notebook)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CampError(f"cannot read {path} as a notebook: {exc}") from exc
    found = tasks_of(nb)
    if not any(task.points for _, task in found):
        raise CampError(f"{path} has no graded cell: tag test cells hw:tests=N (and answers hw:solution)")
    tagged = {i for i, _ in found}
    for i, cell in enumerate(nb["cells"]):
        md = cell.setdefault("metadata", {})
        if i not in tagged:
            if md.pop("nbgrader", None) is not None:  # a tag was removed: the cell is ordinary again
                md.pop("editable", None)
                md.pop("deletable", None)
            continue
        task = dict(found)[i]
        md["nbgrader"] = _metadata(task)
        if task.kind in ("tests", "readonly"):
            md["editable"], md["deletable"] = False, False
        else:
            md.pop("editable", None)
            md.pop("deletable", None)
    if write:
        text = json.dumps(nb, ensure_ascii=False, indent=1) + "\n"
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
    return [task for _, task in found]


def is_source(notebook: str | os.PathLike) -> bool:
    """Whether `notebook` carries graded nbgrader cells (a homework source)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in nb.get("cells", []))


def cli_mark(args) -> int:
    for path in args.notebooks:
        tasks = mark(path, write=not args.check)
        points = sum(t.points for t in tasks)
        counts = {k: sum(t.kind == k for t in tasks) for k in ("solution", "tests", "answer", "readonly")}
        print(f"{path}: {counts['tests']} test cells ({sum(t.hidden for t in tasks)} with hidden tests), "
              f"{counts['solution']} solution cells, {counts['answer']} written answers, {counts['readonly']} "
              f"read-only cells; {points:g} points" + (" (checked, not written)" if args.check else ""))
    return 0
