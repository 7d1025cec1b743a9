"""Views of camp.rag results: the retrieval comparison chart."""

from __future__ import annotations


def plot_retrieval(report, ax=None):
    """Grouped bars: hit@1 / hit@3 / hit@5 / MRR for each retrieval mode, on all questions and per language group.
    Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    table = report.table
    metrics = [c for c in table.columns if c.startswith("hit@")] + ["MRR"]
    groups = list(dict.fromkeys(table["questions"]))
    modes = list(dict.fromkeys(table["mode"]))
    if ax is None:
        _, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), sharey=True, squeeze=False)
        axes = axes[0]
    else:
        axes = [ax]
        groups = groups[:1]
    width = 0.8 / len(modes)
    colors = {"dense": "#4c78a8", "bm25": "#f58518", "hybrid": "#54a24b"}
    for a, g in zip(axes, groups, strict=False):
        sub = table[table["questions"] == g]
        for j, m in enumerate(modes):
            row = sub[sub["mode"] == m]
            vals = [float(row[c].iloc[0]) for c in metrics]
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(metrics))]
            a.bar(xs, vals, width, label=m, color=colors.get(m))
        n = int(sub["n"].iloc[0])
        a.set_title(f"{g} ({n} questions)", fontsize=10)
        a.set_xticks(range(len(metrics)), metrics)
        a.set_ylim(0, 1.05)
        a.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share of questions / MRR")
    axes[0].legend(fontsize=8, loc="lower left")
    return axes[0]
