"""Figures of the multimodal lesson (notebooks/07_multimodal.ipynb), drawn from code so they can be redrawn:

    .venv/bin/python assets/figures/multimodal_figures.py      # writes vlm_architecture.svg, tiny_vl_scenes.png

vlm_architecture.svg: a vision-language model — picture → vision encoder → patch features → projector → image
tokens, spliced with the text tokens into the language model's input. tiny_vl_scenes.png: generated pictures that
tiny-vl learns from, with their questions and answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def _box(ax, x, y, w, h, text, color, fs=11, weight="normal"):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#333333",
                                lw=1.2))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fs, weight=weight)


def _arrow(ax, x0, y0, x1, y1):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", lw=1.4, color="#333333"))


def architecture(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # the SVG keeps text as text
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: the browser draws the Chinese
    plt.rcParams["svg.hashsalt"] = "camp"  # stable ids: the file changes only when the drawing does
    fig, ax = plt.subplots(figsize=(11, 5.2))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 5.2)
    ax.axis("off")
    # the picture, cut into patches
    for i in range(3):
        for j in range(3):
            c = "#f2b8b8" if j == 0 else ("#b8c8f2" if j == 2 else "#ffffff")
            ax.add_patch(plt.Rectangle((0.3 + 0.42 * j, 3.2 + 0.42 * i), 0.42, 0.42, fc=c, ec="#666666", lw=0.8))
    ax.text(0.93, 2.9, "图片 picture\n切成小块 patches", ha="center", va="top", fontsize=10)
    _arrow(ax, 1.65, 3.83, 2.1, 3.83)
    _box(ax, 2.1, 3.3, 1.9, 1.05, "视觉编码器\nvision encoder\n(CLIP / InternViT)", "#dbe9d4")
    _arrow(ax, 4.0, 3.83, 4.45, 3.83)
    for k in range(4):
        ax.add_patch(plt.Rectangle((4.5 + 0.22 * k, 3.45), 0.18, 0.75, fc="#dbe9d4", ec="#666666", lw=0.8))
    ax.text(4.91, 3.3, "每块一个特征\none feature per patch", ha="center", va="top", fontsize=9)
    _arrow(ax, 5.42, 3.83, 5.85, 3.83)
    _box(ax, 5.85, 3.3, 1.6, 1.05, "投影层\nprojector\n(MLP)", "#f6e3c5")
    _arrow(ax, 6.65, 3.3, 6.65, 2.45)
    ax.text(6.8, 2.9, "图像 token\nimage tokens", ha="left", va="center", fontsize=10)
    # the LLM's input sequence
    seq = [("<s>", "#eeeeee"), ("user", "#eeeeee")] + [("img", "#f6e3c5")] * 4 + [("左边", "#ffffff"),
                                                                                  ("的", "#ffffff"), ("颜色", "#ffffff"),
                                                                                  ("？", "#ffffff")]
    x = 1.0
    for text, color in seq:
        ax.add_patch(plt.Rectangle((x, 1.8), 0.78, 0.55, fc=color, ec="#666666", lw=0.8))
        ax.text(x + 0.39, 2.075, text, ha="center", va="center", fontsize=9)
        x += 0.83
    ax.text(1.0, 2.5, "语言模型的输入：<image> 占位符被换成图像 token，和文字 token 排在一起", fontsize=10)
    _arrow(ax, 5.1, 1.8, 5.1, 1.35)
    _box(ax, 2.6, 0.3, 5.0, 1.0, "大语言模型 LLM (InternLM2 / tiny)\n像读文字一样读图像 token，写出回答：“红色”",
         "#d4e2f0", fs=11)
    ax.text(8.6, 4.6, "可训练 trainable", fontsize=9, color="#555555")
    ax.text(8.6, 4.25, "· 预训练：投影层（对齐）", fontsize=9)
    ax.text(8.6, 3.95, "· 指令微调：投影层 + LLM", fontsize=9)
    ax.text(8.6, 3.65, "  (LoRA / QLoRA / 全量)", fontsize=9)
    ax.text(8.6, 3.35, "· 视觉编码器常冻结", fontsize=9)
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


def scenes_grid(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from camp.multimodal import scenes

    examples = scenes.scenes(4, seed=5)
    fig, axes = plt.subplots(1, 4, figsize=(10, 3.1))
    for ax, sc in zip(axes, examples, strict=True):
        ax.imshow(sc.image(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        en = scenes.colour_questions(sc)[5][1]
        ax.set_title(en.replace(" and ", "\nand "), fontsize=8)
    fig.suptitle("tiny-vl's training pictures (48 × 48 px, generated)", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    architecture(HERE / "vlm_architecture.svg")
    scenes_grid(HERE / "tiny_vl_scenes.png")
    print("wrote", HERE / "vlm_architecture.svg", HERE / "tiny_vl_scenes.png")
