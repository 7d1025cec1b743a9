"""The gradebook a TA hands on: one row per student, one column per task, from the graded results.

`gradebook/<assignment>.csv` (UTF-8 with BOM, so spreadsheet programs read the Chinese right) and
`gradebook/<assignment>.html` (the table, a score-distribution chart as inline SVG, each student's reasons).
Students who handed nothing in are not in the course folder and so not in the table; ungraded submissions are
listed with status "pending". Stdlib only (no plotting library: the chart is drawn here).
"""

from __future__ import annotations

import csv
import html
import statistics
from dataclasses import dataclass
from pathlib import Path

from camp.homework.grading import result_for
from camp.homework.layout import Course


@dataclass
class Gradebook:
    assignment: str
    tasks: list[tuple[str, float]]  # (task name, max points), in notebook order
    rows: list[dict]  # student, status, score, max, per-task scores, needs_manual, reasons
    csv_path: Path | None = None
    html_path: Path | None = None

    @property
    def scores(self) -> list[float]:
        return [r["score"] for r in self.rows if r["status"] != "pending"]

    def summary(self) -> str:
        s = self.scores
        if not s:
            return f"{self.assignment}: nothing graded yet ({len(self.rows)} submissions)"
        return (f"{self.assignment}: {len(s)} graded of {len(self.rows)} · mean {statistics.mean(s):.2f} · "
                f"median {statistics.median(s):g} · max {max(s):g} / {self.rows[0]['max']:g}")

    def __str__(self) -> str:
        width = max([len("student"), *(len(r["student"]) for r in self.rows)])
        lines = [self.summary(), f"{'student':<{width}}  score  status  reasons"]
        for r in self.rows:
            lines.append(f"{r['student']:<{width}}  {r['score']:>5g}  {r['status']:<7} {'; '.join(r['reasons'])[:120]}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return render_html(self)

    def to_dict(self) -> dict:
        return {"assignment": self.assignment, "tasks": self.tasks, "rows": self.rows,
                "csv": str(self.csv_path) if self.csv_path else None,
                "html": str(self.html_path) if self.html_path else None}


def build(course: Course, assignment: str) -> Gradebook:
    from camp.runtime import markers

    manual = markers.read_json(course.camp_dir / "manual" / f"{assignment}.json")  # formgrader's, via sync
    rows, tasks = [], {}
    for student in course.submissions(assignment):
        r = result_for(course, assignment, student)
        if not r:
            rows.append({"student": student, "status": "pending", "score": 0.0, "max": 0.0, "tasks": {},
                         "needs_manual": 0.0, "reasons": []})
            continue
        per = {}
        reasons = list(r.get("notes") or [])
        if r.get("reason"):
            reasons.insert(0, r["reason"])
        pending_points = float(r.get("manual_pending") or 0)
        for task in r.get("tasks", []):
            tasks.setdefault(task["name"], task["max"])
            per[task["name"]] = task["score"]
            hand = manual.get(student, {}).get(task["name"])
            if hand is not None:
                per[task["name"]] = hand
                pending_points -= task["max"] if task["needs_manual_grade"] else 0
            if task.get("reason") and not task["needs_manual_grade"]:
                reasons.append(f"{task['name']}: {task['reason']}")
        rows.append({"student": student, "status": r.get("status", "graded"),
                     "score": float(sum(v or 0.0 for v in per.values())), "max": float(r.get("max_score") or 0),
                     "tasks": per, "needs_manual": max(0.0, pending_points), "reasons": reasons})
    maximum = max((r["max"] for r in rows), default=0.0)
    for r in rows:
        r["max"] = r["max"] or maximum
    return Gradebook(assignment, list(tasks.items()), rows)


def write(course: Course, assignment: str) -> Gradebook:
    book = build(course, assignment)
    course.reports.mkdir(parents=True, exist_ok=True)
    book.csv_path = course.reports / f"{assignment}.csv"
    book.html_path = course.reports / f"{assignment}.html"
    tmp = book.csv_path.with_name(f".{book.csv_path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["student", "status", "score", "max_score", *(f"{n} (/{m:g})" for n, m in book.tasks),
                    "needs_manual_grade_points", "reasons"])
        for r in book.rows:
            w.writerow([r["student"], r["status"], f"{r['score']:g}", f"{r['max']:g}",
                        *("" if r["tasks"].get(n) is None else f"{r['tasks'][n]:g}" for n, _ in book.tasks),
                        f"{r['needs_manual']:g}", " | ".join(r["reasons"])])
    tmp.replace(book.csv_path)
    tmp = book.html_path.with_name(f".{book.html_path.name}.tmp")
    tmp.write_text("<!doctype html><meta charset='utf-8'><title>" + html.escape(assignment) + "</title>"
                   "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 6px}"
                   "table{border-collapse:collapse}.bad{color:#b00}</style>" + render_html(book), encoding="utf-8")
    tmp.replace(book.html_path)
    return book


def histogram_svg(scores: list[float], maximum: float, width: int = 520, height: int = 180) -> str:
    """Bars: how many students got each score (scores rounded to whole points)."""
    top = max(1, int(round(maximum)))
    counts = [0] * (top + 1)
    for s in scores:
        counts[min(top, max(0, int(round(s))))] += 1
    peak = max(counts) or 1
    pad, bw = 30, (width - 40) / (top + 1)
    bars = []
    for i, n in enumerate(counts):
        h = (height - 2 * pad) * n / peak
        x, y = 30 + i * bw, height - pad - h
        bars.append(f"<rect x='{x + 2:.1f}' y='{y:.1f}' width='{bw - 4:.1f}' height='{h:.1f}' fill='#4a7bd0'/>"
                    f"<text x='{x + bw / 2:.1f}' y='{height - pad + 14}' font-size='11' text-anchor='middle'>{i}</text>"
                    + (f"<text x='{x + bw / 2:.1f}' y='{y - 3:.1f}' font-size='11' text-anchor='middle'>{n}</text>"
                       if n else ""))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
            f"aria-label='score distribution'><text x='4' y='14' font-size='12'>人数 / students per score</text>"
            + "".join(bars) + f"<line x1='30' y1='{height - pad}' x2='{width - 10}' y2='{height - pad}' "
            f"stroke='#333'/></svg>")


def render_html(book: Gradebook) -> str:
    e = html.escape
    head = "".join(f"<th>{e(n)}<br><small>/{m:g}</small></th>" for n, m in book.tasks)
    body = []
    for r in book.rows:
        cells = "".join(
            f"<td class='{'bad' if (r['tasks'].get(n) == 0) else ''}'>"
            f"{'' if r['tasks'].get(n) is None else format(r['tasks'][n], 'g')}</td>" for n, _ in book.tasks)
        body.append(f"<tr><td>{e(r['student'])}</td><td>{e(r['status'])}</td><td><b>{r['score']:g}</b>/{r['max']:g}"
                    f"</td>{cells}<td>{r['needs_manual']:g}</td><td><small>{'<br>'.join(e(x) for x in r['reasons'])}"
                    f"</small></td></tr>")
    maximum = max((r["max"] for r in book.rows), default=0.0)
    return (f"<h2>{e(book.assignment)}</h2><p>{e(book.summary())}</p>{histogram_svg(book.scores, maximum)}"
            f"<table><tr><th>student</th><th>status</th><th>score</th>{head}<th>manual</th><th>reasons</th></tr>"
            + "".join(body) + "</table>")
