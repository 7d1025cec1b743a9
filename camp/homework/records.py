"""What a lesson exercise keeps from the student's own run, for grading without the models and tools.

Grading runs a lesson's exercises in a sandbox with no GPU, no network, no tool env and none of the student's
models, so an exercise that asks the model something ("write a 300-character story", "ask your fine-tuned
assistant who it is", "measure tokens/s at concurrency 1 and 4") cannot be run again there. Such a cell is
tagged `hw:recorded` and ends with

    camp.homework.keep(story=story, n=n)

In the student's run `keep` shows what it kept and stores it in the cell's output (a JSON bundle of its own MIME
type), so it travels inside the handed-in notebook — nothing else to upload. When grading, camp reads those
outputs from the submission before nbgrader clears them (`extract`), writes them next to the graded notebook
(`FILE`), and runs `restore` in place of every `hw:recorded` cell: the kept values are variables again, and the
test cells after it check them. Kept values are the student's word (like the screenshot they replace): tests
check them for consistency with what grading does recompute (the student's functions, their dataset), and the
submitted notebook keeps the code that produced them for a TA to read.

Stdlib only: imported in the notebook kernel and in the grading sandbox.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

MIME = "application/vnd.camp.homework.record+json"
FILE = "camp_records.json"  # next to the graded notebook (the kernel's working folder when grading)
MAX_CHARS = 20_000  # one kept value, as JSON: evidence, not data sets
_TAG = "hw:recorded"


def _plain(name: str, value):
    """The value as JSON data; numpy/pandas scalars become Python numbers, tuples become lists."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()  # numpy scalar
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"keep({name}=…): {value} is not a finite number")
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"keep({name}=…) keeps JSON data (str, int, float, bool, None, lists and dicts of them), "
                        f"not {type(value).__name__}: convert it first, e.g. list(...), float(...), "
                        f"df.to_dict('records')") from exc
    if len(text) > MAX_CHARS:
        raise ValueError(f"keep({name}=…) is {len(text)} characters as JSON; keep at most {MAX_CHARS} "
                         f"(a summary, not the whole data)")
    return json.loads(text)


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "…"


class Kept(dict):
    """What one `keep` call stored; shown as a short list, carried as JSON in the cell's output."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        lines = [f"已记录（交作业时随笔记本一起提交） / kept for grading: {name} = {_short(v)}" for name, v in self.items()]
        return {"text/plain": "\n".join(lines), MIME: dict(self)}


def keep(**values) -> None:
    """Keep these values for grading (see the module docstring): shown in the cell's output, which carries them."""
    if not values:
        raise TypeError("keep() needs at least one value: keep(story=story)")
    bad = [name for name in values if not _name_ok(name)]
    if bad:
        raise ValueError(f"keep(): {', '.join(bad)} — use plain variable names (not starting with _)")
    kept = Kept({name: _plain(name, value) for name, value in values.items()})
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(kept)  # an output of its own, wherever the call stands in the cell
    else:
        print(kept._repr_mimebundle_()["text/plain"])


# ------------------------------------------------------------------------------------------ grading side
def extract(nb: dict) -> dict:
    """Every kept value in a notebook's outputs (cell order; a later keep of a name wins)."""
    out: dict = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []) or []:
            data = output.get("data") if isinstance(output, dict) else None
            kept = data.get(MIME) if isinstance(data, dict) else None
            if isinstance(kept, str):  # some writers store JSON bundles as text
                try:
                    kept = json.loads(kept)
                except ValueError:
                    kept = None
            if isinstance(kept, dict):
                out.update({k: v for k, v in kept.items() if _name_ok(k)})
    return out


def _name_ok(name) -> bool:
    """A plain variable name (not `__builtins__` and the like: restoring must not rewire the kernel)."""
    import keyword

    return isinstance(name, str) and name.isidentifier() and not name.startswith("_") and not keyword.iskeyword(name)


def is_recorded(cell) -> bool:
    return cell.get("cell_type") == "code" and _TAG in (cell.get("metadata", {}).get("tags") or [])


RESTORE = ("from camp.homework.records import restore as _camp_restore\n"
           "_camp_restore(globals())\n"
           "del _camp_restore")


def restore(namespace: dict, folder: str | Path = ".") -> list[str]:
    """Grading: put the kept values back as variables (what runs in place of a `hw:recorded` cell)."""
    path = Path(folder) / FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    kept = {k: v for k, v in kept.items() if _name_ok(k)} if isinstance(kept, dict) else {}
    namespace.update(kept)
    if kept:
        print("评分：恢复交上来的记录 / grading: restored the kept values: " + ", ".join(sorted(kept)))
    else:
        print("评分：这份作业没有记录（交作业前这个单元格没有运行成功） / grading: nothing was kept — this cell "
              "did not run to the end before the notebook was handed in")
    return sorted(kept)
