"""The rich progress view: what the core reports (camp.runtime.progress) drawn for where it runs.

JupyterLab: an ipywidgets bar with the Job's metrics, plus — when the Job's parser reports them — a live loss curve
(inline SVG) and the chat hook's sample answers; a static copy stays in the saved notebook. Messages go to stdout
(stderr shows on a pink error background in JupyterLab). A terminal: a tqdm bar, samples printed above it.
Pipes and CI logs: the core's plain lines. `camp` installs this view (camp.use_views()).
"""

from __future__ import annotations

import html
import sys
import time

from camp.runtime import progress


def in_notebook() -> bool:
    from camp.ui import in_notebook as _in

    return _in()


class AutoView(progress.View):
    def say(self, message: str) -> None:
        if in_notebook():
            print(message, flush=True)
        else:
            print(message, file=sys.stderr, flush=True)

    def show(self, obj) -> None:
        if in_notebook():
            from IPython.display import display

            display(obj)
        else:
            print(obj, file=sys.stderr, flush=True)

    def follow(self, job, interval: float = 0.25) -> None:
        if in_notebook():
            try:
                return _follow_widget(job, interval)
            except ImportError:
                pass
        elif sys.stderr.isatty():
            try:
                return _follow_tqdm(job, interval)
            except ImportError:
                pass
        return super().follow(job, interval)


def _losses(job) -> list[tuple[float, float]]:
    return [(e[1], e[2]) for e in list(job.progress.events) if e[0] == "loss"]


def loss_svg(losses, width: int = 520, height: int = 170) -> str:
    """A small line chart of [(iteration, loss)] as inline SVG (no plotting library, renders anywhere)."""
    pts = [(float(i), float(v)) for i, v in losses if v == v]  # drop NaN
    if len(pts) < 2:
        return f'<svg width="{width}" height="{height}"><text x="10" y="20" font-size="12">loss: waiting for ' \
               "the first log lines…</text></svg>"
    left, right, top, bottom = 46, 10, 18, 24
    x0, x1 = pts[0][0], max(p[0] for p in pts)
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    sx = (width - left - right) / max(x1 - x0, 1e-9)
    sy = (height - top - bottom) / (hi - lo)
    line = " ".join(f"{left + (x - x0) * sx:.1f},{top + (hi - y) * sy:.1f}" for x, y in pts)
    last = pts[-1]
    return (
        f'<svg width="{width}" height="{height}" style="font-family:sans-serif;font-size:11px">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.6" points="{line}"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{hi:.3g}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{lo:.3g}</text>'
        f'<text x="{left}" y="{height - 6}">{x0:.0f}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">iteration {x1:.0f}</text>'
        f'<text x="{left}" y="12">loss {last[1]:.4g} at iteration {last[0]:.0f}</text></svg>'
    )


def samples_html(events, limit: int = 6) -> str:
    items = [e for e in list(events) if e[0] == "sample"][-limit:]
    if not items:
        return ""
    rows = "".join(f"<li><small>iter {it}</small> <b>{html.escape(q)}</b> → {html.escape(a)}</li>"
                   for _, it, q, a in items)
    return f"<div>XTuner's chat hook (greedy):<ul style='margin:2px 0'>{rows}</ul></div>"


def _follow_widget(job, interval: float) -> None:
    import ipywidgets as w
    from IPython.display import HTML, display

    p = job.progress
    bar = w.IntProgress(value=0, min=0, max=int(p.total or 1), description=p.desc[:20],
                        layout=w.Layout(width="420px"))
    info = w.HTML()
    plot, samples = w.HTML(), w.HTML()
    box = w.VBox([w.HBox([bar, info])])
    display(box)
    seen, charted = -1, False
    while True:
        done = job.done
        if p.total:
            bar.max = int(p.total)
        bar.value = min(int(p.n), bar.max)
        bar.description = p.desc[:20]
        info.value = html.escape(progress.status_text(job))
        events = list(p.events)
        if len(events) != seen:
            seen = len(events)
            losses = _losses(job)
            if losses and not charted:  # a Job that reports losses gets the curve and the samples
                box.children = (*box.children, plot, samples)
                charted = True
            if charted:
                plot.value = loss_svg(losses)
                samples.value = samples_html(events)
        if done:
            break
        time.sleep(interval)
    bar.bar_style = "success" if job.status == "succeeded" else "danger"
    if job.status == "succeeded" and p.total:
        bar.value = bar.max
    info.value = html.escape(f"{job.status} in {job.seconds or 0:.1f} s — " + progress.status_text(job))
    if charted:
        # widgets do not survive in a saved notebook: one static copy of the final curve and samples, once
        box.children = box.children[:1]
        display(HTML(loss_svg(_losses(job)) + samples_html(p.events, limit=3)))


def _follow_tqdm(job, interval: float) -> None:
    from tqdm.auto import tqdm

    p = job.progress
    bar = tqdm(total=p.total, desc=p.desc, unit=p.unit, dynamic_ncols=True, leave=True, file=sys.stderr)
    shown = 0
    try:
        while True:
            done = job.done
            if p.total != bar.total:
                bar.total = p.total
            bar.n = p.n
            bar.set_description(p.desc, refresh=False)
            if p.metrics:
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in p.metrics.items()},
                                refresh=False)
            events = list(p.events)
            for e in events[shown:]:
                if e[0] == "sample":
                    bar.write(f"[iter {e[1]}] {e[2]} → {e[3]}", file=sys.stderr)
            shown = len(events)
            bar.refresh()
            if done:
                break
            time.sleep(interval)
        if job.status == "succeeded" and p.total and bar.n < p.total:
            bar.n = p.total
            bar.refresh()
    finally:
        bar.close()
    print(f"{job.name}: {job.status} in {job.seconds or 0:.1f} s (log: {job.log_path})", file=sys.stderr)
