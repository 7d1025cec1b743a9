"""Draws the figures of lesson 08 (RAG): `python assets/figures/rag_figures.py` writes rag_pipeline.svg beside it.

Text is kept as SVG text (svg.fonttype none), so the Chinese labels render with the reader's own fonts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
# the text stays text in the SVG and is drawn by the reader's fonts: the build font's missing CJK glyphs do not matter
warnings.filterwarnings("ignore", message="Glyph .* missing from font")


def box(ax, x, y, w, h, title, sub, color):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#334155",
                                lw=1.2))
    ax.text(x + w / 2, y + h * 0.64, title, ha="center", va="center", fontsize=11, weight="bold", color="#0f172a")
    ax.text(x + w / 2, y + h * 0.28, sub, ha="center", va="center", fontsize=8, color="#334155")


def arrow(ax, a, b, text=""):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#475569"))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", fontsize=8, color="#475569")


def pipeline(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.6))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    ax.text(0.1, 4.35, "离线：建知识库 / offline: build the knowledge base", fontsize=10, color="#1e3a8a", weight="bold")
    ax.text(0.1, 1.95, "在线：每个问题 / online: every question", fontsize=10, color="#14532d", weight="bold")
    w, h = 1.8, 0.95

    def row(y, steps, end, color):
        for x, t, s in steps:
            box(ax, x, y, w, h, t, s, color)
        for (x1, *_), (x2, *_) in zip(steps, [*steps[1:], (9.0,)], strict=True):
            arrow(ax, (x1 + w, y + h / 2), (x2, y + h / 2))
        box(ax, 9.0, y, 1.8, h, *end)

    row(3.1, [(0.2, "文档", "md / txt / html / pdf"), (2.4, "切块 chunk", "~300 字，保留段落与标题"),
              (4.6, "嵌入 embed", "USE 多语言 512 维"), (6.8, "索引 index", "faiss 向量 + BM25(jieba)")],
        ("知识库", "段落 + 出处(文件:行)", "#e0e7ff"), "#dbeafe")
    row(0.6, [(0.2, "问题 query", "“显存不够怎么办？”"), (2.4, "检索 retrieve", "稠密 + BM25 → 融合"),
              (4.6, "提示词 prompt", "资料：[1]…[k] + 问题"), (6.8, "大模型 LLM", "任意 OpenAI 兼容端点")],
        ("回答 + 来源", "answer with sources", "#fef9c3"), "#dcfce7")
    arrow(ax, (9.9, 3.1), (3.3, 0.6 + h), "top-k 段落")
    fig.tight_layout()
    plt.rcParams["svg.fonttype"] = "none"
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    plt.rcParams["svg.fonttype"] = "none"
    plt.rcParams["svg.hashsalt"] = "camp-rag"
    pipeline(HERE / "rag_pipeline.svg")
    print(HERE / "rag_pipeline.svg")
