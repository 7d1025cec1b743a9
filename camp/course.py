"""Run the course headless: every numbered notebook through papermill, then a table of what each achieved.

Notebooks call `camp.report(key, value)` in their check cells; under `camp course` the values are collected
from each run (CAMP_REPORT_FILE), so the table shows each lesson's key result, not just pass/fail.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from camp.runtime import config, kernel
from camp.runtime.errors import CampError
from camp.runtime.i18n import pad, t, width


def report(key: str, value) -> None:
    """Record a lesson's key result: printed in the notebook, collected by `camp course`."""
    print(f"{key}: {value}")
    path = os.environ.get("CAMP_REPORT_FILE")
    if not path:
        return
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else {}
    data[key] = value if isinstance(value, (int, float, bool)) or value is None else str(value)
    p.write_text(json.dumps(data, ensure_ascii=False, indent=2))


def notebooks(selection: list[str] | None = None) -> list[Path]:
    """The course notebooks in order (`NN_name.ipynb`); `selection` picks by number ("01") or name."""
    found = sorted(p for p in config.notebooks_dir().glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not selection:
        return found
    chosen = []
    for s in selection:
        matches = [p for p in found if p.stem == s or p.name == s or p.name.startswith(f"{s}_")
                   or p.stem.split("_", 1)[-1] == s]
        if not matches:
            raise CampError(f"no course notebook matches {s!r}; there are: {', '.join(p.stem for p in found)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def run(selection: list[str] | None = None, *, profile: str = "auto", out: str | os.PathLike | None = None,
        parameters: dict | None = None, log_output: bool = False) -> list[dict]:
    """Execute notebooks in order into a run folder; returns one row per notebook."""
    import papermill as pm

    from camp.runtime.jobs import new_run_dir

    # `!camp …` and `!pip …` in a lesson must mean the kernel's own env, even when it is not activated
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    run_dir = Path(out) if out else new_run_dir("course")
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for nb in notebooks(selection):
        try:
            declared = set(pm.inspect_notebook(str(nb)))
        except ValueError:  # no kernelspec in the notebook: pass every parameter
            declared = {"profile", *(parameters or {})}
        params = {k: v for k, v in {"profile": profile, **(parameters or {})}.items() if k in declared}
        out_nb = run_dir / nb.name
        results = run_dir / f"{nb.stem}.results.json"
        results.unlink(missing_ok=True)
        os.environ["CAMP_REPORT_FILE"] = str(results)
        t0 = time.time()
        status, error = "ok", None
        try:
            pm.execute_notebook(str(nb), str(out_nb), parameters=params, cwd=str(nb.parent),
                                kernel_name=kernel.name_for(sys.executable), language="python",
                                progress_bar=False, log_output=log_output)
        except pm.PapermillExecutionError as exc:
            status, error = "failed", f"{exc.ename}: {exc.evalue}"[:300]
        except Exception as exc:  # kernel died, bad notebook JSON …
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            os.environ.pop("CAMP_REPORT_FILE", None)
        key = json.loads(results.read_text()) if results.exists() else {}
        rows.append({"notebook": nb.stem, "status": status, "seconds": round(time.time() - t0, 1),
                     "result": key, "error": error, "output": str(out_nb)})
        print(t(f"{nb.stem}：{'通过' if status == 'ok' else '失败'}，用时 {rows[-1]['seconds']} 秒",
                f"{nb.stem}: {status} in {rows[-1]['seconds']} s"), file=sys.stderr, flush=True)
    (run_dir / "summary.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    def result_text(r):
        if r["error"]:
            return r["error"]
        return "; ".join(f"{k}={v}" for k, v in r["result"].items()) or "-"

    head = (t("课程", "notebook"), t("状态", "status"), t("秒", "seconds"), t("关键结果", "key result"))
    body = [(r["notebook"], r["status"], f"{r['seconds']:.1f}", result_text(r)) for r in rows]
    widths = [max(width(str(x[i])) for x in [head, *body]) for i in range(3)]
    lines = ["  ".join(pad(str(x[i]), widths[i]) for i in range(3)) + "  " + x[3] for x in [head, *body]]
    lines.insert(1, "-" * min(100, max(width(line) for line in lines)))
    return "\n".join(lines)


def _literal(text: str):
    """`-p steps 40` → 40, `-p name 'x'` → 'x' (like papermill's own -p)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cli_course(args) -> int:
    params = {k: _literal(v) for k, v in args.parameter}
    rows = run(args.notebooks or None, profile=args.profile, out=args.out, parameters=params)
    print(format_table(rows))
    if rows:
        print(t(f"\n执行后的 notebook：{Path(rows[0]['output']).parent}",
                f"\nexecuted notebooks: {Path(rows[0]['output']).parent}"))
    failed = [r for r in rows if r["status"] != "ok"]
    return 1 if failed or not rows else 0
