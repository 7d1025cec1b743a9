"""The nbgrader side of sandboxed grading: what camp plugs into nbgrader's own `autograde` pipeline.

nbgrader executes a submission in a Jupyter kernel. camp makes that kernel a sandboxed one (a kernelspec whose
launcher, camp.homework.kernel, starts ipykernel inside camp.agents.sandbox: no network, no view of the course
folder, time/memory/process limits, its own scratch folder) and talks to it over Unix sockets (the sandbox has
no network, so not TCP). Two small preprocessors close gaps nbgrader leaves when the code is hostile:

- `SandboxExecute` (nbgrader's Execute): a kernel that dies (killed itself, hit a limit) no longer throws away the
  whole submission — the cell it died in and every later cell get an error, so the tasks graded before keep their
  points and the rest score 0; and a test cell that did not run (a `skip-execution` tag added by the student, a
  dead kernel) gets an error instead of nbgrader's default full marks for a cell without output.
- Lessons: grading runs the homework, not the lesson. Only the `parameters` cell and the homework section (from
  the first cell with a `hw:` tag or nbgrader metadata to the last) run; the lesson's own cells before it (models,
  training, servers) and its check cells after it are skipped. A `hw:recorded` cell runs
  camp.homework.records.restore in place of its code: the values the student's run kept become variables again.
- `GradingNotes`: a note cell at the top of the graded notebook (so in the feedback) saying what camp saw: test
  cells edited or deleted (nbgrader graded the original), the kernel's death, timeouts.

Imported only in the grading process (it imports nbgrader), never in the kernel.
"""

from __future__ import annotations

import uuid

import nbformat
from nbclient.exceptions import DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import List

from camp.homework import records

KERNEL_NAME = "camp-sandbox"
NOTE_ID = "camp-grading-notes"


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class SandboxExecute(Execute):
    """nbgrader's Execute, robust to a kernel that dies or to test cells that never ran."""

    def preprocess(self, nb, resources=None, km=None):
        # A student can tag a cell `skip-execution` (tags are not covered by nbgrader's checksums): make the
        # skip tag one nobody can guess, and judge unexecuted test cells below.
        self.skip_cells_with_tag = f"camp-skip-{uuid.uuid4().hex}"
        for cell in outside_homework(nb.cells):
            cell.metadata.setdefault("tags", []).append(self.skip_cells_with_tag)
        self._ran: set[int] = set()
        self._current = -1
        died = None
        try:
            nb, resources = super().preprocess(nb, resources, km)
        except DeadKernelError as exc:
            died = self._death_reason(exc)
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags")
            if tags and self.skip_cells_with_tag in tags:
                tags.remove(self.skip_cells_with_tag)
        notes = resources.setdefault("camp_notes", []) if isinstance(resources, dict) else []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if died and index == self._current:
                cell.outputs.append(_error("KernelDied", died))
            elif index not in self._ran and (utils.is_grade(cell) or died and index > self._current):
                why = f"not run: the kernel died in an earlier cell ({died})" if died else \
                    "not run: this cell was skipped, so its tests count as failed"
                if utils.is_grade(cell):
                    cell.outputs.append(_error("CellNotRun", why))
        if died:
            notes.append(f"the kernel died in cell {self._current + 1}: {died}; later cells did not run and "
                         f"their tests score 0")
        for index, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" and out.get("ename") == "CellTimeoutError":
                    notes.append(f"cell {index + 1} ran longer than {self.timeout} s and was interrupted")
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        self._current = index
        if records.is_recorded(cell) and self.skip_cells_with_tag not in cell.metadata.get("tags", []):
            # the student's own code here needed their models: run the restore of what it kept instead
            source, cell.source = cell.source, records.RESTORE
            try:
                result = super().preprocess_cell(cell, resources, index)
            finally:
                cell.source = source
        else:
            result = super().preprocess_cell(cell, resources, index)
        self._ran.add(index)
        return result

    def _death_reason(self, exc) -> str:
        code = None
        try:
            code = self.km.provisioner.process.returncode  # the sandbox's exit status, when the provisioner kept it
        except AttributeError:
            pass
        if code in (-24, 152):  # SIGXCPU: the sandbox's CPU-time budget
            return "it used up the CPU-time budget for the whole notebook"
        if code in (-9, 137):
            return "it was killed (SIGKILL: the code killed its own kernel, or it ran out of memory)"
        return "the kernel process exited" + (f" (status {code})" if code is not None else "") + \
            " — the code ended its own kernel or crashed it"


def _is_homework(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags") or []
    return bool(cell.get("metadata", {}).get("nbgrader")) or any(str(t).startswith("hw:") for t in tags)


def outside_homework(cells) -> list:
    """The code cells grading skips: before the homework section (but the `parameters` cell) and after it."""
    marked = [i for i, cell in enumerate(cells) if _is_homework(cell)]
    if not marked:
        return []
    first, last = marked[0], marked[-1]
    return [cell for i, cell in enumerate(cells) if cell.get("cell_type") == "code" and (i > last or i < first and
            "parameters" not in (cell.get("metadata", {}).get("tags") or []))]


class GradingNotes(NbGraderPreprocessor):
    """Put what camp saw while grading at the top of the graded notebook (nbgrader's feedback shows it)."""

    notes = List().tag(config=True)  # found before nbgrader ran: edited or deleted locked cells (see tampering)

    def preprocess(self, nb, resources):
        notes = list(self.notes) + list(resources.get("camp_notes", []))
        nb.cells = [c for c in nb.cells if c.get("id") != NOTE_ID]
        if notes:
            text = "**评分说明 / grading notes**\n\n" + "\n".join(f"- {n}" for n in notes)
            nb.cells.insert(0, NotebookNode(cell_type="markdown", id=NOTE_ID, metadata={}, source=text))
        resources["camp_notes"] = notes
        return nb, resources


def checksums(path, *, recorded: bool) -> dict[str, str]:
    """{grade_id: checksum} of a notebook's locked nbgrader cells: as recorded in the cell (a release) or as the
    cell is now (a submission)."""
    nb = nbformat.read(str(path), as_version=4)  # sources as strings, as nbgrader's checksum expects
    out = {}
    for cell in nb.cells:
        md = cell.get("metadata", {}).get("nbgrader")
        if not md or not md.get("grade_id") or (recorded and not md.get("locked")):
            continue
        try:
            out[md["grade_id"]] = md.get("checksum", "") if recorded else utils.compute_checksum(cell)
        except (KeyError, TypeError, ValueError, AttributeError):
            out[md["grade_id"]] = "unreadable"
    return out


def tampering(released: dict[str, str], submitted: dict[str, str]) -> list[str]:
    """Locked cells (tests, instructions) the submission changed or deleted, against the released copy."""
    notes = []
    for name, checksum in released.items():
        if name not in submitted:
            notes.append(f"cell `{name}` was missing from the submission: the original was put back and graded")
        elif submitted[name] != checksum:
            notes.append(f"cell `{name}` was changed in the submission: it was graded as originally written")
    return notes


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback keeps hidden tests hidden: their code is cut from the page, and a failing cell's traceback (which
    would quote the failing line) is cut to its last line."""

    def preprocess_cell(self, cell, resources, index):
        text = cell.get("source", "")
        if utils.is_grade(cell) and "BEGIN HIDDEN TESTS" in text:
            kept, hiding = [], False
            for line in text.split("\n"):
                if "BEGIN HIDDEN TESTS" in line:
                    hiding = True
                    kept.append("# (隐藏测试 / hidden tests)")
                elif "END HIDDEN TESTS" in line:
                    hiding = False
                elif not hiding:
                    kept.append(line)
            cell.source = "\n".join(kept)
            # only the errors' last lines stay: any other output could echo the hidden code
            cell.outputs = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
            for out in cell.outputs:
                out["traceback"] = [f"{out.get('ename')}: {out.get('evalue')}"]
        return cell, resources
