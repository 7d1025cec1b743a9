"""The live view of a fine-tuning Job: progress, loss curve and the chat hook's sample answers as they appear.

JupyterLab: an ipywidgets progress bar, a loss curve (inline SVG, redrawn as loss lines arrive) and the samples.
A terminal: a tqdm bar (loss, lr, eta) with the samples printed above it. Pipes/CI logs: a line every few seconds.
Only reads the Job and its camp.training.LogParser; the training runs the same without any view.
"""

from __future__ import annotations

import html
import sys
import time


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


def _samples_html(parser, limit: int = 6) -> str:
    items = [e for e in list(parser.events) if e[0] == "sample"][-limit:]
    if not items:
        return ""
    rows = "".join(f"<li><small>iter {it}</small> <b>{html.escape(q)}</b> → {html.escape(a)}</li>"
                   for _, it, q, a in items)
    return f"<div>XTuner's chat hook (greedy):<ul style='margin:2px 0'>{rows}</ul></div>"


def show_plan(plan) -> None:
    """The plan before training: its HTML table in JupyterLab, text on stderr elsewhere."""
    from camp.ui import in_notebook

    if in_notebook():
        from IPython.display import display

        display(plan)
    else:
        print(plan, file=sys.stderr, flush=True)


def follow(job, parser, interval: float = 0.25) -> None:
    """Show the training Job until it ends (never raises for the Job's outcome; job.wait() decides)."""
    from camp.ui import in_notebook

    if in_notebook():
        try:
            return _follow_widget(job, parser, interval)
        except ImportError:
            pass
    if sys.stderr.isatty():
        try:
            return _follow_tqdm(job, parser, interval)
        except ImportError:
            pass
    return _follow_plain(job, parser, interval)


def _status(job, parser) -> str:
    p = job.progress
    m = parser.metrics
    parts = [f"iter {int(p.n)}/{int(p.total) if p.total else '?'}"]
    if isinstance(m.get("loss"), float):
        parts.append(f"loss {m['loss']:.4g}")
    if isinstance(m.get("lr"), float):
        parts.append(f"lr {m['lr']:.3g}")
    if m.get("eta"):
        parts.append(f"eta {m['eta']}")
    return " · ".join(parts)


def _follow_widget(job, parser, interval: float) -> None:
    import ipywidgets as w
    from IPython.display import HTML, display

    bar = w.IntProgress(value=0, min=0, max=int(job.progress.total or 1), description="train",
                        layout=w.Layout(width="420px"))
    info = w.HTML()
    plot = w.HTML(loss_svg([]))
    samples = w.HTML()
    display(w.VBox([w.HBox([bar, info]), plot, samples]))
    seen = (-1, -1)
    while True:
        done = job.done
        p = job.progress
        if p.total:
            bar.max = int(p.total)
        bar.value = min(int(p.n), bar.max)
        info.value = html.escape(_status(job, parser))
        key = (len(parser.losses), len(parser.events))
        if key != seen:
            seen = key
            plot.value = loss_svg(sorted(parser.losses.items()))
            samples.value = _samples_html(parser)
        if done:
            break
        time.sleep(interval)
    parser.close()
    samples.value = _samples_html(parser)
    bar.bar_style = "success" if job.status == "succeeded" else "danger"
    info.value = html.escape(f"{job.status} in {job.seconds or 0:.1f} s — " + _status(job, parser))
    # widgets do not survive in a saved notebook: leave a static copy of the curve and samples as well
    display(HTML(loss_svg(sorted(parser.losses.items())) + _samples_html(parser, limit=3)))


def _follow_tqdm(job, parser, interval: float) -> None:
    from tqdm.auto import tqdm

    p = job.progress
    bar = tqdm(total=p.total, desc="train", unit="it", dynamic_ncols=True, leave=True, file=sys.stderr)
    shown = 0
    try:
        while True:
            done = job.done
            if p.total != bar.total:
                bar.total = p.total
            bar.n = p.n
            m = parser.metrics
            bar.set_postfix({k: (f"{m[k]:.4g}" if isinstance(m[k], float) else m[k])
                             for k in ("loss", "lr", "eta") if k in m}, refresh=False)
            events = list(parser.events)
            for e in events[shown:]:
                if e[0] == "sample":
                    bar.write(f"[iter {e[1]}] {e[2]} → {e[3]}", file=sys.stderr)
            shown = len(events)
            bar.refresh()
            if done:
                break
            time.sleep(interval)
    finally:
        bar.close()
    print(f"train: {job.status} in {job.seconds or 0:.1f} s (log: {job.log_path})", file=sys.stderr)


def _follow_plain(job, parser, interval: float, every: float = 5.0) -> None:
    last_t, shown, last = 0.0, 0, None
    while True:
        done = job.done
        events = list(parser.events)
        for e in events[shown:]:
            if e[0] == "sample":
                print(f"[iter {e[1]}] {e[2]} → {e[3]}", file=sys.stderr, flush=True)
        shown = len(events)
        line = "train: " + _status(job, parser)
        if line != last and time.time() - last_t >= every:
            print(line, file=sys.stderr, flush=True)
            last, last_t = line, time.time()
        if done:
            break
        time.sleep(interval)
    print(f"train: {job.status} in {job.seconds or 0:.1f} s — {_status(job, parser)} (log: {job.log_path})",
          file=sys.stderr, flush=True)
