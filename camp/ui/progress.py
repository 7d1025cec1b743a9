"""The rich progress view: what the core reports (camp.runtime.progress) drawn for where it runs.

JupyterLab: an ipywidgets bar with the Job's metrics, plus — when the Job's parser reports them — a live loss curve
(inline SVG) and the chat hook's sample answers, replaced by one static line when the Job ends. Messages go to stdout
(stderr shows on a pink error background in JupyterLab). A terminal: a tqdm bar, samples printed above it.
Pipes and CI logs: the core's plain lines. `camp` installs this view (camp.use_views()).
"""

from __future__ import annotations

import html
import sys
import time

from camp.runtime import progress
from camp.runtime.i18n import t


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
        return (f'<svg class="camp-loss" width="{width}" height="{height}"><text x="10" y="20" font-size="12">'
                f'{t("loss：等待第一批日志…", "loss: waiting for the first log lines…")}</text></svg>')
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
        f'<svg class="camp-loss" width="{width}" height="{height}" style="font-family:sans-serif;font-size:11px">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.6" points="{line}"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{hi:.3g}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{lo:.3g}</text>'
        f'<text x="{left}" y="{height - 6}">{x0:.0f}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{t("迭代", "iteration")} {x1:.0f}</text>'
        f'<text class="camp-loss-last" x="{left}" y="12">'
        f'{t(f"第 {last[0]:.0f} 次迭代 loss {last[1]:.4g}", f"loss {last[1]:.4g} at iteration {last[0]:.0f}")}'
        "</text></svg>"
    )


def samples_html(events, limit: int = 6) -> str:
    items = [e for e in list(events) if e[0] == "sample"][-limit:]
    if not items:
        return ""
    rows = "".join(f"<li><small>{t('第', 'iter ')}{it}{t(' 次迭代', '')}</small> <b>{html.escape(q)}</b> → "
                   f"{html.escape(a)}</li>" for _, it, q, a in items)
    head = t("XTuner 训练中的对话检查（贪心解码）：", "XTuner's chat hook (greedy):")
    return f"<div class='camp-samples'>{head}<ul style='margin:2px 0'>{rows}</ul></div>"


def _status_line(job) -> str:
    ok = job.status == "succeeded"
    words = {"succeeded": t("完成", "succeeded"), "failed": t("失败", "failed"), "stopped": t("已停止", "stopped")}
    return (f"{'✔' if ok else '✘'} {html.escape(job.name)}: {words.get(job.status, job.status)}, "
            f"{t('用时', 'in')} {job.seconds or 0:.1f} {t('秒', 's')} — {html.escape(progress.status_text(job))}")


def _follow_widget(job, interval: float) -> None:
    """A live view (bar, metrics; for a Job that reports losses a loss chart and the chat hook's answers) that
    replaces itself, when the Job ends, with one static line — widgets do not survive in a saved notebook. The
    final chart and answers belong to the result the stage returns (FinetuneResult shows them), so a cell that
    fine-tunes shows each once; only a failed Job keeps its chart, since no result will show it."""
    import ipywidgets as w
    from IPython.display import HTML, display

    p = job.progress
    bar = w.IntProgress(value=0, min=0, max=int(p.total or 1), description=p.desc[:20],
                        layout=w.Layout(width="420px"))
    info = w.HTML()
    plot, samples = w.HTML(), w.HTML()
    box = w.VBox([w.HBox([bar, info])])
    handle = display(box, display_id=True)
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
    final = f"<div class='camp-job-done'>{_status_line(job)}</div>"
    if charted and job.status != "succeeded":
        final += loss_svg(_losses(job)) + samples_html(p.events, limit=3)
    if handle is not None:
        handle.update(HTML(final))
    else:
        display(HTML(final))
    box.close()


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
    print(t(f"{job.name}：{job.status}，用时 {job.seconds or 0:.1f} 秒（日志：{job.log_path}）",
            f"{job.name}: {job.status} in {job.seconds or 0:.1f} s (log: {job.log_path})"), file=sys.stderr)
