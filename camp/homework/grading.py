"""Grading: one submission at a time with nbgrader's own `autograde`, each in a world of its own.

A submission is graded in a private copy of the course (`.camp/grading/…`): the released gradebook (no other
student in it), the assignment's source files, and that one submission. nbgrader autograde runs there with its
kernel sandboxed (camp.homework.sandboxed / kernel). The scores are read back from that private gradebook into
`.camp/results/<assignment>/<student>.json` — written last, atomically: it is the "graded" mark (with the hash of
what was graded), so a rerun skips it, a killed batch resumes, and submissions graded on other machines (a Slurm
array, a Kubernetes Job) merge by copying files. The course's own gradebook.db is written in one place only,
`sync()`, by one process.

`batch()` imports nbgrader once and forks one child per submission, N at a time, each under a wall clock; a
submission that crashes or hangs its grader is recorded with score 0 and the reason, and the batch goes on.
This module imports nbgrader: it runs in the grading process (a subprocess of the stage), never in a
notebook kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from camp.homework.layout import Course, check_id, tree_hash
from camp.runtime import config, markers

GRADER_VERSION = 1
# Parallel kernels run as different unprivileged users (the process limit counts per user): slot i → BASE_UID + i.
BASE_UID = 61000


@dataclass
class Limits:
    cell_timeout: int = 30  # seconds per cell (nbgrader's own per-cell timeout; the cell is interrupted)
    time_limit: int = 300  # seconds for one whole submission (wall clock); also its kernel's CPU-time budget
    memory_mb: int = 2048  # address-space limit of the kernel
    max_procs: int = 64  # processes + threads of the kernel
    scratch_mb: int = 256  # the kernel's scratch folder (RAM)
    read_only: list[str] = field(default_factory=list)  # more host paths the kernel may read (models, envs)
    sandbox: bool = True  # False only for trusted notebooks (a TA checking the solutions)


def result_for(course: Course, assignment: str, student: str) -> dict:
    return markers.read_json(course.result_path(assignment, student))


def is_graded(course: Course, assignment: str, student: str) -> bool:
    """Graded, from exactly the submission that is there now."""
    r = result_for(course, assignment, student)
    sub = course.submitted / student / assignment
    return bool(r) and r.get("grader") == GRADER_VERSION and sub.is_dir() and r.get("submission") == tree_hash(sub)


# ------------------------------------------------------------------------------------------ one submission
def grade_one(course: Course, assignment: str, student: str, limits: Limits, *, slot: int = 0) -> dict:
    """Autograde one submission (in this process); writes and returns its result."""
    check_id(student, "student")
    sub = course.submitted / student / assignment
    digest = tree_hash(sub)
    started = time.time()
    grading = course.camp_dir / "grading" / assignment
    grading.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{student}.tmp-{os.getpid()}-", dir=grading))
    runtime = Path(tempfile.mkdtemp(prefix=f"camp-hw-{os.getpid()}-", dir="/tmp"))  # short: socket paths are limited
    try:
        shutil.copyfile(course.snapshot_path(assignment), work / "gradebook.db")
        shutil.copytree(course.source / assignment, work / "source" / assignment)
        shutil.copytree(sub, work / "submitted" / student / assignment, symlinks=True)
        _records(work / "submitted" / student / assignment)
        result = _autograde(work, assignment, student, limits, runtime, slot, course.release_dir)
        result.update(student=student, assignment=assignment, submission=digest, grader=GRADER_VERSION,
                      seconds=round(time.time() - started, 2))
        graded = work / "autograded" / student / assignment
        if graded.is_dir():
            dest = course.autograded / student / assignment
            if dest.exists():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(graded, dest, symlinks=True)
        save_result(course, result)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _records(folder: Path) -> None:
    """What the student's run kept (camp.homework.keep: outputs nbgrader is about to clear) → a file the graded
    notebook's kernel reads (records.FILE, one of the submission's read-only inputs)."""
    from camp.homework import records

    kept: dict = {}
    for nb in sorted(folder.glob("*.ipynb")):
        try:
            kept.update(records.extract(json.loads(nb.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue  # nbgrader reports the unreadable notebook itself
    target = folder / records.FILE
    if target.is_symlink() or target.exists():
        target.unlink()  # never one the student handed in
    if kept:
        target.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")


def save_result(course: Course, result: dict) -> None:
    path = course.result_path(result["assignment"], result["student"])
    path.parent.mkdir(parents=True, exist_ok=True)
    markers.write_json(path, result)


def _autograde(work: Path, assignment: str, student: str, limits: Limits, runtime: Path, slot: int,
               release: Path) -> dict:
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )
    from traitlets.config import Config

    from camp.homework import sandboxed

    course = Course(work)
    c = course.nbgrader_config()
    c.Autograde.autograde_preprocessors = [
        sandboxed.SandboxExecute, sandboxed.GradingNotes, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    c.Execute.timeout = int(limits.cell_timeout)
    # nothing in the kernel is worth a graceful goodbye once the last cell ran: kill it (saves ~2 s per submission)
    c.Execute.shutdown_kernel = "immediate"
    c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and run, not silently dropped
    notes = []
    for released in sorted((release / assignment).glob("*.ipynb")):
        mine = work / "submitted" / student / assignment / released.name
        try:
            notes += sandboxed.tampering(sandboxed.checksums(released, recorded=True),
                                         sandboxed.checksums(mine, recorded=False) if mine.is_file() else {})
        except (OSError, ValueError):
            notes.append(f"{released.name} could not be read as a notebook")
    c.GradingNotes.notes = notes
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "CAMP_HOMEWORK_SANDBOX")}
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    if limits.sandbox:
        c.Execute.kernel_name = sandboxed.KERNEL_NAME
        c.KernelManager.transport = "ipc"  # the sandbox has no network: Unix sockets in the runtime folder
        c.KernelManager.ip = str(runtime / "kernel")
        os.environ["JUPYTER_PATH"] = str(_kernelspec(work)) + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        os.environ["CAMP_HOMEWORK_SANDBOX"] = json.dumps({
            "cpu_seconds": limits.time_limit, "memory_mb": limits.memory_mb, "max_procs": limits.max_procs,
            "scratch_mb": limits.scratch_mb, "read_only": list(limits.read_only), "uid": BASE_UID + slot,
            "sockets": str(runtime),
            "python": sys.executable})
    try:
        api = NbGraderAPI(config=Config(c))
        outcome = api.autograde(assignment, student, force=True, create=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    log = outcome.get("log") or ""
    print(log, outcome.get("error") or "", sep="\n", flush=True)  # the submission's log (.camp/logs/…)
    result = read_scores(course, assignment, student)
    if not outcome.get("success") or not result["tasks"]:
        if not result["tasks"]:
            result.update(_zero_tasks(course, assignment, db=course.db))
        for task in result["tasks"]:
            if task["kind"] == "tests":
                task["score"] = 0.0
        result.update(totals(result["tasks"]), status="failed",
                      reason="nbgrader autograde failed: " + _last_error(log + "\n" + (outcome.get("error") or "")))
    return result


def _kernelspec(work: Path) -> Path:
    spec = work / "kernels" / "kernels" / "camp-sandbox"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "camp.homework.kernel", "-f", "{connection_file}"],
        "display_name": "camp sandbox (grading)",
        "language": "python",
        # signals cannot cross into the sandbox's own session: interrupt over the control channel
        "interrupt_mode": "message",
        "env": {"PYTHONPATH": config.pythonpath()},
    }))
    return spec.parent.parent


def _last_error(text: str) -> str:
    from camp.runtime import failures

    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (failures.traceback_error(lines) or (lines[-1] if lines else "no log"))[:300]


def read_scores(course: Course, assignment: str, student: str) -> dict:
    """Scores from a (private) gradebook plus each failing cell's error line from the graded notebook."""
    from nbgrader.api import Gradebook, MissingEntry

    tasks, notes = [], []
    graded_dir = course.autograded / student / assignment
    with Gradebook(course.db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            submission = None
        for nb in submission.notebooks if submission else []:
            errors, nb_notes = _errors(graded_dir / f"{nb.name}.ipynb")
            notes += nb_notes
            for g in nb.grades:
                manual = bool(g.needs_manual_grade)
                tasks.append({"notebook": nb.name, "name": g.name, "max": g.max_score,
                              "kind": "answer" if g.cell.cell_type == "markdown" else "tests",
                              "score": None if manual and g.auto_score is None else (g.auto_score or 0.0),
                              "needs_manual_grade": manual, "reason": errors.get(g.name)})
    return {"status": "graded", "tasks": tasks, "notes": notes, "reason": None, **totals(tasks)}


def totals(tasks: list[dict]) -> dict:
    """score: every point known so far; auto_max: what the autograder can give; manual_pending: points a TA
    still has to grade (written answers)."""
    return {"score": round(sum(t["score"] or 0.0 for t in tasks), 4), "max_score": sum(t["max"] for t in tasks),
            "auto_max": sum(t["max"] for t in tasks if t["kind"] == "tests"),
            "manual_pending": sum(t["max"] for t in tasks if t["needs_manual_grade"])}


def _errors(path: Path) -> tuple[dict[str, str], list[str]]:
    """{grade_id: 'Error: message'} for graded cells with an error or stderr, and the grading notes."""
    from camp.homework.sandboxed import NOTE_ID

    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, []
    out, notes = {}, []
    for cell in nb.get("cells", []):
        if cell.get("id") == NOTE_ID:
            notes = [ln[2:] for ln in "".join(cell.get("source", "")).splitlines() if ln.startswith("- ")]
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        # a timeout shows as the KeyboardInterrupt of the interrupt plus nbgrader's CellTimeoutError: say the latter
        errors.sort(key=lambda o: o.get("ename") not in ("CellTimeoutError", "KernelDied", "CellNotRun"))
        if errors:
            out[gid] = f"{errors[0].get('ename')}: {errors[0].get('evalue')}".strip().rstrip(":")[:300]
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                out[gid] = "wrote to stderr: " + "".join(o.get("text", "")).strip()[:200]
                break
    return out, notes


# ------------------------------------------------------------------------------------------ the batch
def pending(course: Course, assignment: str, *, force: bool = False, students=None, shard=None) -> list[str]:
    """The submissions this run grades: all (or `students`), this shard's share, minus the graded ones."""
    everyone = course.submissions(assignment)
    chosen = [s for s in everyone if not students or s in students]
    if shard:
        index, count = shard
        chosen = [s for i, s in enumerate(everyone) if i % count == index and s in chosen]
    return [s for s in chosen if force or not is_graded(course, assignment, s)]


def batch(course: Course, assignment: str, students: list[str], limits: Limits, *, workers: int = 1,
          sync: bool = False, out=sys.stdout) -> list[dict]:
    """Grade `students`, `workers` at a time, each in a child forked from this process once nbgrader is imported
    (imported once, not once per submission; a submission that wrecks its grader takes only its child down);
    prints one progress line per finished submission. With sync, gradebook.db is updated at the end."""
    import nbgrader.apps  # noqa: F401 - imported once here, inherited by every forked child
    import nbgrader.preprocessors  # noqa: F401

    import camp.homework.sandboxed  # noqa: F401

    _clean_leftovers(course.camp_dir / "grading" / assignment)
    queue = list(reversed(students))
    free = list(reversed(range(max(1, workers))))
    running: dict[int, tuple[str, int, float, float]] = {}  # pid -> student, slot, started, deadline
    done: list[dict] = []
    total = len(students)
    wall = limits.time_limit + 60  # the submission's own limit plus kernel start-up and nbgrader's work
    print(f"[grade] 0/{total} {assignment}", file=out, flush=True)
    while queue or running:
        while queue and free:
            student, slot = queue.pop(), free.pop()
            log = course.camp_dir / "logs" / assignment / f"{student}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            out.flush()
            pid = os.fork()
            if pid == 0:
                _child(course, assignment, student, limits, slot, log)
            running[pid] = (student, slot, time.time(), time.monotonic() + wall)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if not pid:
            for child, (_, _, _, deadline) in list(running.items()):
                if time.monotonic() > deadline:
                    os.kill(child, signal.SIGKILL)  # its kernel goes with it (bubblewrap --die-with-parent)
            time.sleep(0.05)
            continue
        if pid not in running:
            continue
        student, slot, started, deadline = running.pop(pid)
        free.append(slot)
        code = os.waitstatus_to_exitcode(status)
        if code == 0 and is_graded(course, assignment, student):
            result = result_for(course, assignment, student)
        else:
            log = course.camp_dir / "logs" / assignment / f"{student}.log"
            if code == -signal.SIGKILL and time.monotonic() > deadline:
                reason = f"grading took longer than {wall} s and was stopped; every task scores 0"
            else:
                reason = f"the grader exited with status {code}: {_last_error(_read(log))}"
            result = failed(course, assignment, student, reason, started, log)
        done.append(result)
        print(f"[grade] {len(done)}/{total} {student} {result.get('status')} "
              f"{result.get('score', 0):g}/{result.get('auto_max', 0):g} ({result.get('seconds', 0):.1f} s)",
              file=out, flush=True)
    if sync:
        from camp.homework.tasks import sync as sync_gradebook

        print(f"[sync] {sync_gradebook(course, assignment)} results", file=out, flush=True)
    return done


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-20000:]
    except OSError:
        return ""


def failed(course: Course, assignment: str, student: str, reason: str, started: float, log: Path) -> dict:
    """Record a submission that could not be graded: every task 0 (written answers still wait for a TA)."""
    result = {"student": student, "assignment": assignment, "status": "failed", "score": 0.0, "tasks": [],
              "notes": [], "reason": reason, "grader": GRADER_VERSION, "seconds": round(time.time() - started, 2),
              "submission": tree_hash(course.submitted / student / assignment), "log": str(log)}
    try:  # the tasks and their maximum from the released gradebook, each at 0
        result.update(_zero_tasks(course, assignment))
    except Exception:  # noqa: BLE001 - the batch goes on; the reason above says what happened
        pass
    save_result(course, result)
    return result


def _child(course: Course, assignment: str, student: str, limits: Limits, slot: int, log: Path) -> None:
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        grade_one(course, assignment, student, limits, slot=slot)
        code = 0
    except BaseException:  # noqa: BLE001 - whatever happens, the child exits and the batch reports it
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _zero_tasks(course: Course, assignment: str, db: Path | None = None) -> dict:
    from nbgrader.api import Gradebook

    tasks = []
    with Gradebook(f"sqlite:///{db or course.snapshot_path(assignment)}") as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            for cell in nb.grade_cells:
                manual = cell.cell_type == "markdown"
                tasks.append({"notebook": nb.name, "name": cell.name, "max": cell.max_score,
                              "kind": "answer" if manual else "tests", "score": None if manual else 0.0,
                              "needs_manual_grade": manual, "reason": None})
    return {"tasks": tasks, **totals(tasks)}


def _clean_leftovers(folder: Path) -> None:
    """Work folders of graders that are gone (a killed batch): `<student>.tmp-<pid>-…`, `/tmp/camp-hw-<pid>-…`."""
    found = [(tmp, tmp.name.split(".tmp-", 1)[1]) for tmp in folder.glob("*.tmp-*")] if folder.is_dir() else []
    found += [(tmp, tmp.name[len("camp-hw-"):]) for tmp in Path("/tmp").glob("camp-hw-*-*")]
    for tmp, rest in found:
        try:
            pid = int(rest.split("-")[0])
            os.kill(pid, 0)
            continue
        except (ValueError, IndexError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(tmp, ignore_errors=True)
