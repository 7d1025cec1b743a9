"""Charts of the core's results (matplotlib Figures, no pyplot: a figure shows once, as the returned value)."""

from __future__ import annotations


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("CJK", "WenQuanYi", "Noto Sans SC", "SimHei", "YaHei", "PingFang",
                                      "Source Han", "Heiti", "SimSun")):
            return f.name
    return None


def eval_bars(result, ax=None, title: str | None = None):
    """Grouped bar chart: one group per dataset (and metric), one bar per model. Returns the Figure."""
    p = result.scores()
    if ax is None:
        from matplotlib.figure import Figure  # no pyplot: the figure shows once, as the returned value

        fig = Figure(figsize=(max(4.5, 1.6 * max(len(p), 1) * max(1, len(p.columns)) ** 0.5 + 2), 3.4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if len(p):
        labels = [d if len({m for _, m in p.index}) == 1 else f"{d}\n{m}" for d, m in p.index]
        n = len(p.columns)
        width = 0.8 / max(n, 1)
        for i, model in enumerate(p.columns):
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(p))]
            bars = ax.bar(xs, p[model].tolist(), width, label=str(model))
            ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
        ax.set_xticks(range(len(p)), labels)
        legend = ax.legend(fontsize=8, loc="upper right" if n < 4 else "best")
        font = _cjk_font() if any(not str(x).isascii() for x in [*labels, *p.columns]) else None
        if font:  # Chinese model/dataset names: a font that has the glyphs, when this machine has one
            for t in [*ax.get_xticklabels(), *legend.get_texts()]:
                t.set_fontfamily([font, "DejaVu Sans"])
    ax.set_ylim(0, 110)
    ax.set_ylabel("score (0–100)")
    ax.set_title(title or "OpenCompass: " + ", ".join(result.models))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def bench_figure(result):
    """Output tokens/s and latency (p50/p90/p99, TTFT p50) against concurrency: a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    xs = [r["concurrency"] for r in result.rows]
    ax1.plot(xs, [r["tokens_per_s"] for r in result.rows], "o-", label="output tokens/s")
    ax1.set_xlabel("concurrent requests")
    ax1.set_ylabel("output tokens / s")
    ax1.set_title(f"throughput — {result.kind}")
    for key, style in (("latency_p50_s", "o-"), ("latency_p90_s", "s--"), ("latency_p99_s", "^:"),
                       ("ttft_p50_s", "x-")):
        ax2.plot(xs, [r[key] if r[key] is not None else float("nan") for r in result.rows], style,
                 label=key.replace("_s", "").replace("_", " "))
    ax2.set_xlabel("concurrent requests")
    ax2.set_ylabel("seconds")
    ax2.set_title("latency")
    ax2.legend(fontsize=8)
    for ax_ in (ax1, ax2):
        ax_.set_ylim(bottom=0)
        ax_.set_xscale("log", base=2)
        ax_.set_xticks(xs, [str(x) for x in xs])
        ax_.grid(alpha=0.3)
    fig.suptitle(result.target, fontsize=9)
    return fig
