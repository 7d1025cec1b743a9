"""Charts the lessons draw from camp's own numbers (the catalogue, the planners), as SVG with the text kept as text.

matplotlib turns text into glyph outlines by default, and the machines the course runs on have no Chinese font, so
Chinese labels would come out as empty boxes. Kept as SVG text (`svg.fonttype: none`), the browser, JupyterLab and
the repository page draw them with their own fonts. `assets/figures/make_figures.py` saves the same charts (and the
course diagrams) as files; a lesson shows a live one by returning a `Chart`.
"""

from __future__ import annotations

import contextlib
import io
import warnings

# CJK fonts first (whichever the viewer has), then matplotlib's own
FONTS = ["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei",
         "DejaVu Sans"]
RC = {"svg.fonttype": "none", "svg.hashsalt": "camp-course", "font.family": ["sans-serif"],
      "font.sans-serif": FONTS, "axes.unicode_minus": False, "font.size": 10}
METHOD_COLORS = {"chat": "#4e79a7", "lora": "#f28e2b", "qlora": "#59a14f", "full": "#e15759"}


@contextlib.contextmanager
def style():
    """rcParams for every course chart; missing-glyph warnings are expected (the viewer has the glyphs)."""
    import matplotlib

    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
        warnings.filterwarnings("ignore", message=r".*findfont.*")
        yield


def svg_text(fig, tight: bool = True) -> str:
    """The figure as SVG text, deterministic (no date, fixed ids): the same numbers give the same bytes.
    tight=False keeps the figure's own size (diagrams: matplotlib cannot measure Chinese text it has no font for)."""
    buf = io.StringIO()
    with style():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                    bbox_inches="tight" if tight else None)
    return buf.getvalue()


class Chart:
    """A matplotlib figure a notebook shows as SVG (Chinese labels intact); `.figure`, `.save(path)`."""

    def __init__(self, figure):
        self.figure = figure

    def _repr_svg_(self) -> str:
        return svg_text(self.figure)

    def __repr__(self) -> str:
        title = self.figure.axes[0].get_title() if self.figure.axes else ""
        return f"<Chart {title!r}>"

    def save(self, path) -> None:
        from pathlib import Path

        Path(path).write_text(svg_text(self.figure), encoding="utf-8")


def memory_chart(models, *, machine_gb: float | None = None, machine_label: str | None = None,
                 profiles: dict | None = None) -> Chart:
    """GPU memory each catalogue model needs to chat / LoRA / QLoRA (assets/models.json), next to the profiles'
    sizes and, when given, this machine's memory ("what fits here")."""
    from matplotlib.figure import Figure

    from camp.runtime.hardware import PROFILE_GB

    profiles = {k: v for k, v in (profiles or PROFILE_GB).items() if v}
    models = [m for m in models if m.memory_gb]
    with style():
        fig = Figure(figsize=(9, 3.8), layout="constrained")
        ax = fig.add_subplot()
        width = 0.26
        for j, method in enumerate(("chat", "lora", "qlora")):
            xs = [i + (j - 1) * width for i in range(len(models))]
            vals = [m.memory_gb.get(method) for m in models]
            bars = ax.bar([x for x, v in zip(xs, vals, strict=True) if v is not None],
                          [v for v in vals if v is not None], width, color=METHOD_COLORS[method],
                          label={"chat": "对话 chat (bf16)", "lora": "LoRA 微调", "qlora": "QLoRA 微调"}[method])
            ax.bar_label(bars, fmt="%g", fontsize=7, padding=1)
        for name, gb in profiles.items():
            ax.axhline(gb, color="#999", lw=0.8, ls="--", zorder=0)
            ax.text(len(models) - 0.45, gb, f" {name} ({gb} GB)", va="center", fontsize=7, color="#666")
        if machine_gb:
            ax.axhline(machine_gb, color="#c33", lw=1.8, zorder=3)
            ax.text(-0.45, machine_gb, f"{machine_label or '这台机器'}: {machine_gb:g} GB", va="bottom",
                    fontsize=8, color="#c33")
        ax.set_xticks(range(len(models)), [m.name for m in models], rotation=15, fontsize=8)
        ax.set_xlim(-0.6, len(models) + 0.9)
        ax.set_ylabel("显存 GB（单卡，batch 1）")
        ax.set_title("每个模型需要多少显存：对话 / LoRA / QLoRA")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    return Chart(fig)


def finetune_memory_chart(rows: dict, *, budget_gb: float | None = None, title: str = "") -> Chart:
    """Stacked bars, one per method: {label: {part: GiB}} as camp.training.plan.estimate returns them."""
    from matplotlib.figure import Figure

    parts = ("weights", "adapters", "gradients", "optimizer", "activations", "overhead")
    names = {"weights": "权重 weights", "adapters": "LoRA 适配器", "gradients": "梯度", "optimizer": "优化器状态",
             "activations": "激活值", "overhead": "其他开销"}
    colors = {"weights": "#4e79a7", "adapters": "#f28e2b", "gradients": "#e15759", "optimizer": "#76b7b2",
              "activations": "#59a14f", "overhead": "#bab0ac"}
    with style():
        fig = Figure(figsize=(7.5, 3.4), layout="constrained")
        ax = fig.add_subplot()
        labels = list(rows)
        left = [0.0] * len(labels)
        for part in parts:
            vals = [rows[k].get(part, 0.0) for k in labels]
            ax.barh(labels, vals, left=left, color=colors[part], label=names[part])
            left = [a + b for a, b in zip(left, vals, strict=True)]
        for i, total in enumerate(left):
            ax.text(total, i, f" {total:.1f} GiB", va="center", fontsize=8)
        if budget_gb:
            ax.axvline(budget_gb, color="#c33", ls="--", lw=1.2)
            ax.text(budget_gb, len(labels) - 0.5, f" {budget_gb:g} GB", color="#c33", fontsize=8, va="bottom")
        ax.invert_yaxis()
        ax.set_xlabel("GiB")
        ax.set_xlim(0, max(left + [budget_gb or 0]) * 1.18)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=3, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    return Chart(fig)


def serving_memory_chart(plans: dict, *, title: str = "") -> Chart:
    """Stacked bars of LMDeploy's memory plan per GPU: {label: camp.serving.memory.ServePlan}, with the KV
    cache's tokens written on each bar."""
    from matplotlib.figure import Figure

    colors = {"weights": "#4e79a7", "runtime": "#bab0ac", "kv": "#59a14f", "headroom": "#eeeeee"}
    with style():
        fig = Figure(figsize=(7.5, 3.2), layout="constrained")
        ax = fig.add_subplot()
        labels = list(plans)
        for i, k in enumerate(labels):
            p = plans[k]
            left = 0.0
            for part, value, name in (("weights", p.weights_gib, "权重"), ("runtime", p.runtime_gib, "运行时"),
                                      ("kv", p.kv_gib, "KV cache"),
                                      ("headroom", p.free_gib - p.weights_gib - p.runtime_gib - p.kv_gib, "余量")):
                ax.barh(i, max(value, 0), left=left, color=colors[part], edgecolor="#999", lw=0.4,
                        label=name if i == 0 else None)
                left += max(value, 0)
            ax.text(p.weights_gib + p.runtime_gib + p.kv_gib / 2, i, f"{p.kv_tokens:,} tokens", ha="center",
                    va="center", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("GiB（单卡）")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return Chart(fig)
