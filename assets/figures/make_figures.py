"""Draw every figure the lessons embed (assets/figures/*.svg): `python assets/figures/make_figures.py [OUT_DIR]`.

Diagrams are drawn here; charts come from camp's own numbers (the catalogue, the fine-tuning and serving memory
planners) through camp.ui.charts, so a change to those numbers is one re-run away from the figures. The SVGs keep
their text as text (Chinese renders with the viewer's fonts) and carry no date: the same code gives the same bytes,
which tests/course/test_figures.py checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from camp.ui import charts  # noqa: E402

MATPLOTLIB = "3.11.2"  # the version that drew the committed files (byte-for-byte comparisons need the same one)
BLUE, ORANGE, GREEN, RED, TEAL, GREY, PURPLE = "#dce9f5", "#fde5cc", "#dff0d8", "#f8d7d7", "#d9f0ee", "#eeeeee", \
    "#e8def3"
EDGE = "#555555"


# ------------------------------------------------------------------------------------------------- helpers
def canvas(w: float, h: float) -> tuple[Figure, object]:
    """A figure whose data units are inches: a box of width 1 holds ~6 Chinese characters at size 11."""
    fig = Figure(figsize=(w, h))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.axis("off")
    fig.camp_diagram = True  # saved at its own size (see camp.ui.charts.svg_text)
    return fig, ax


def box(ax, x, y, w, h, text, color=BLUE, size=10, weight="normal", edge=EDGE, style="round,pad=0.02,rounding_size=0.08",
        ls="-"):
    """A rounded box centred on (x, y)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, fc=color, ec=edge, lw=1, ls=ls))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight, linespacing=1.35)


def arrow(ax, a, b, text="", color=EDGE, size=8, rad=0.0, offset=(0, 0.12), ls="-"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.2, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if text:
        ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], text, ha="center", va="center",
                fontsize=size, color="#333")


def note(ax, x, y, text, size=8, color="#444", ha="center", **kw):
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, color=color, linespacing=1.3, **kw)


# ------------------------------------------------------------------------------------------------- 00 overview
def chain():
    fig, ax = canvas(12.5, 3.6)
    stages = [("数据", "书生万卷\nOpenDataLab\nMinerU", "00 总览", GREY),
              ("预训练", "InternEvo", "00 总览", GREY),
              ("微调", "XTuner\nLoRA / QLoRA", "03 微调", ORANGE),
              ("评测", "OpenCompass\n司南", "04 评测", GREEN),
              ("部署", "LMDeploy\n量化 · 服务", "05 部署", TEAL),
              ("智能体", "Lagent\nAgentLego", "06 智能体", PURPLE),
              ("应用", "多模态 · RAG\n茴香豆", "07 / 08", RED)]
    xs = [0.95 + i * 1.78 for i in range(len(stages))]
    for x, (title, tools, lesson, color) in zip(xs, stages, strict=True):
        box(ax, x, 2.05, 1.45, 1.35, "", color)
        note(ax, x, 2.5, title, size=12, color="#000", weight="bold")
        note(ax, x, 1.85, tools, size=8.5)
        box(ax, x, 0.95, 1.1, 0.36, lesson, "#ffffff", size=8.5, ls="--")
        arrow(ax, (x, 1.36), (x, 1.14), color="#999")
    for a, b in zip(xs, xs[1:], strict=False):
        arrow(ax, (a + 0.74, 2.05), (b - 0.74, 2.05))
    box(ax, (xs[2] + xs[4]) / 2, 3.25, 4.2, 0.42, "InternLM2 / 2.5 模型：1.8B · 7B · 20B　→　02 对话 demo", BLUE,
        size=9)
    note(ax, 6.25, 0.35, "虚线框：讲这一环的课（notebooks/NN_*.ipynb）；01 是环境体检", size=8, color="#666")
    return fig


def timeline():
    fig, ax = canvas(12.5, 2.3)
    events = [("2023.6", "InternLM\n千亿参数模型"), ("2023.7", "InternLM-7B 开源\n免费商用 · 全链条工具"),
              ("2023.8", "书生万卷 1.0\nLagent"), ("2023.9", "InternLM-20B"), ("2024.1", "InternLM2\n7B · 20B"),
              ("2024.7", "InternLM2.5\n1.8B · 7B · 20B\n7B-Chat-1M：百万上下文")]
    ax.plot([0.4, 12.1], [1.35, 1.35], color=EDGE, lw=1.5)
    for i, (when, what) in enumerate(events):
        x = 0.9 + i * 2.15
        ax.plot([x], [1.35], "o", color="#4e79a7", ms=8)
        note(ax, x, 1.7, when, size=10, color="#000", weight="bold")
        note(ax, x, 0.75, what, size=8.5)
    return fig


def decision_flow():
    fig, ax = canvas(12.5, 4.4)
    box(ax, 1.0, 3.6, 1.6, 0.55, "业务需求", BLUE, size=11, weight="bold")
    box(ax, 3.3, 3.6, 2.2, 0.55, "模型选型\n看评测榜单与自测", GREEN, size=9)
    box(ax, 6.0, 3.6, 2.0, 0.55, "业务场景复杂吗？", GREY, size=9)
    box(ax, 6.0, 2.35, 2.0, 0.55, "算力充足吗？", GREY, size=9)
    box(ax, 3.4, 1.25, 2.4, 0.6, "续训 / 全参数微调\n（学新知识、深度适配）", ORANGE, size=8.5)
    box(ax, 6.0, 1.25, 2.4, 0.6, "部分参数微调\nLoRA / QLoRA", ORANGE, size=8.5)
    box(ax, 9.0, 3.6, 2.3, 0.55, "需要和环境交互吗？\n（调用工具、查数据库）", GREY, size=8.5)
    box(ax, 9.0, 2.35, 2.0, 0.5, "构建智能体", PURPLE, size=9)
    box(ax, 11.5, 2.35, 1.6, 0.5, "模型评测", GREEN, size=9)
    box(ax, 11.5, 1.25, 1.6, 0.5, "模型部署", TEAL, size=9, weight="bold")
    arrow(ax, (1.8, 3.6), (2.2, 3.6))
    arrow(ax, (4.4, 3.6), (5.0, 3.6))
    arrow(ax, (6.0, 3.32), (6.0, 2.63), "是", offset=(0.15, 0))
    arrow(ax, (7.0, 3.6), (7.85, 3.6), "否：直接用", offset=(0, 0.15))
    arrow(ax, (5.2, 2.1), (3.9, 1.56), "充足", offset=(-0.2, 0.12))
    arrow(ax, (6.0, 2.08), (6.0, 1.56), "不足", offset=(0.25, 0))
    # both fine-tuned models go on to the "interaction" question: one line under the boxes, then up
    ax.plot([3.4, 3.4, 7.6, 7.6], [0.95, 0.7, 0.7, 1.25], color=EDGE, lw=1.2)
    ax.plot([6.0, 6.0], [0.95, 0.7], color=EDGE, lw=1.2)
    arrow(ax, (7.6, 1.25), (8.2, 3.32))
    arrow(ax, (9.0, 3.32), (9.0, 2.6), "是", offset=(0.15, 0))
    arrow(ax, (10.15, 3.45), (11.2, 2.6), "否", offset=(0.1, 0.12))
    arrow(ax, (10.0, 2.35), (10.7, 2.35))
    arrow(ax, (11.5, 2.1), (11.5, 1.5))
    note(ax, 6.2, 0.4, "微调后的模型回到“交互”这一步：要用工具就做成智能体；最后都要先评测、再部署上线", size=8.5,
         color="#555")
    return fig


def needle():
    fig, ax = canvas(11, 2.6)
    n = 40
    for i in range(n):
        x = 0.5 + i * 0.22
        color = "#d62728" if i == 26 else "#c9d6e3"
        ax.add_patch(FancyBboxPatch((x, 1.2), 0.18, 0.55, boxstyle="square,pad=0", fc=color, ec="none"))
    note(ax, 0.5 + 26 * 0.22 + 0.09, 2.05, "针：一句关键的话\n“口令是 7481”", size=8.5, color="#d62728")
    note(ax, 4.8, 0.85, "草堆：很长的无关文本（几千到几十万 token）；针放在深度 0%…100% 的不同位置", size=8.5)
    box(ax, 10.1, 1.48, 1.5, 0.7, "问题：\n口令是多少？", BLUE, size=9)
    arrow(ax, (9.3, 1.48), (9.35, 1.48))
    note(ax, 5.5, 0.3, "每个（长度, 深度）问一次：答对 = 模型在长上下文的那个位置真的“看到”了针", size=8.5, color="#555")
    return fig


# ------------------------------------------------------------------------------------------------- 01 setup
def envs():
    fig, ax = canvas(11, 3.3)
    box(ax, 2.2, 1.65, 3.4, 2.3, "", BLUE)
    note(ax, 2.2, 2.5, "core 环境（.venv）", size=11, color="#000", weight="bold")
    note(ax, 2.2, 1.55, "JupyterLab 内核 · camp\ntransformers 5 · Streamlit\nLagent · papermill", size=9)
    tools = [("xtuner 环境", "XTuner 0.2 · transformers 4.48", "xtuner train / convert", ORANGE),
             ("opencompass 环境", "OpenCompass · numpy<2", "opencompass config.py", GREEN),
             ("lmdeploy 环境（GPU）", "LMDeploy · TurboMind", "lmdeploy serve / lite", TEAL)]
    for i, (name, what, cli, color) in enumerate(tools):
        y = 2.7 - i * 1.05
        box(ax, 8.3, y, 3.6, 0.8, f"{name}\n{what}", color, size=9)
        arrow(ax, (3.95, 1.65), (6.45, y))
        note(ax, 5.2, y + 0.42, cli, size=8, color="#333")
    note(ax, 5.0, 0.15, "camp 在内核里只做计划、写配置、看进度；重型工具各在自己的环境里，通过它们自己的命令行运行",
         size=8.5, color="#555")
    return fig


# ------------------------------------------------------------------------------------------------- 02 chat
def generation():
    fig, ax = canvas(11.5, 3.4)
    note(ax, 0.2, 3.05, "对话模板把多轮对话拼成一段文字，模型只做一件事：预测下一个 token", size=10, color="#000", ha="left")
    tpl = ("<|im_start|>system\\n你是一个乐于助人的助手。<|im_end|>\\n<|im_start|>user\\n你好<|im_end|>\\n"
           "<|im_start|>assistant\\n")
    box(ax, 4.2, 2.35, 8.0, 0.5, tpl, GREY, size=8)
    box(ax, 9.6, 2.35, 1.6, 0.5, "你好！我是…", ORANGE, size=9)
    box(ax, 4.2, 1.0, 2.6, 0.7, "模型\n（InternLM2-Chat）", BLUE, size=10)
    box(ax, 8.0, 1.0, 2.6, 0.7, "下一个 token 的概率\n贪心：取最大 / 采样：按温度抽", GREEN, size=8.5)
    arrow(ax, (4.2, 2.08), (4.2, 1.38), "整段文字", offset=(0.5, 0))
    arrow(ax, (5.55, 1.0), (6.65, 1.0))
    arrow(ax, (9.35, 1.0), (9.6, 2.08), "接到末尾，再预测下一个", offset=(1.0, 0.0), rad=0.3)
    note(ax, 5.75, 0.2, "一直重复，直到生成 <|im_end|>：这就是“逐 token 流式输出”；下一轮对话时，整段历史再送进去一次",
         size=8.5, color="#555")
    return fig


def tunnel():
    fig, ax = canvas(11, 2.6)
    box(ax, 1.6, 1.4, 2.6, 1.3, "你的电脑\n浏览器打开\nhttp://127.0.0.1:8501", BLUE, size=9)
    box(ax, 8.9, 1.4, 3.4, 1.5, "开发机（远程 GPU）\nStreamlit 网页 demo\n只监听 127.0.0.1:8501", ORANGE, size=9)
    arrow(ax, (2.95, 1.55), (7.15, 1.55), "ssh -CNg -L 8501:127.0.0.1:8501 root@… -p 端口", offset=(0, 0.22))
    arrow(ax, (7.15, 1.15), (2.95, 1.15), "网页通过加密的 ssh 隧道回来", offset=(0, -0.22), color="#888")
    note(ax, 5.5, 0.2, "服务只对本机开放：别人访问不到；你通过 ssh 端口转发，把远程的 8501 端口映射到自己电脑的 8501",
         size=8.5, color="#555")
    return fig


# ------------------------------------------------------------------------------------------------- 03 fine-tune
def lora():
    fig, ax = canvas(11, 4.2)
    # the frozen weight
    ax.add_patch(FancyBboxPatch((0.6, 0.8), 2.6, 2.6, boxstyle="square,pad=0", fc=BLUE, ec=EDGE))
    note(ax, 1.9, 2.3, "W", size=22, color="#000")
    note(ax, 1.9, 1.6, "预训练权重 d × k\n冻结，不更新", size=9)
    note(ax, 3.65, 2.1, "+", size=22, color="#000")
    # B (d × r) and A (r × k)
    ax.add_patch(FancyBboxPatch((4.2, 0.8), 0.45, 2.6, boxstyle="square,pad=0", fc=ORANGE, ec=EDGE))
    note(ax, 4.42, 2.1, "B", size=16, color="#000")
    note(ax, 4.42, 0.5, "d × r\n初始化为 0", size=8)
    note(ax, 4.95, 2.1, "×", size=16, color="#000")
    ax.add_patch(FancyBboxPatch((5.3, 2.95), 2.6, 0.45, boxstyle="square,pad=0", fc=ORANGE, ec=EDGE))
    note(ax, 6.6, 3.17, "A", size=16, color="#000")
    note(ax, 6.6, 2.6, "r × k　随机初始化", size=8)
    note(ax, 9.35, 3.3, "h = W x + (α / r) · B A x", size=12, color="#000")
    note(ax, 9.35, 2.35, "只训练 A、B：\nr(d + k) 个参数\n而不是 d·k 个", size=9)
    note(ax, 9.35, 1.25, "B = 0 ⇒ 开始时 BA = 0：\n模型和原来一模一样，\n训练从原模型出发", size=9)
    note(ax, 5.5, 0.1, "r（秩）远小于 d、k，例如 8、16、64；训练完可以把 BA 合并回 W（xtuner convert merge），推理不变慢",
         size=8.5, color="#555")
    return fig


def finetune_kinds():
    fig, ax = canvas(11.5, 3.3)
    cols = [("增量预训练", "让模型学新知识", "纯文本：文章、书籍、代码\n{\"text\": \"…\"}", "所有位置都算 loss", GREY),
            ("指令微调（SFT）", "让模型学会按指令对话", "对话：system / user / assistant\n{\"messages\": […]}",
             "只在 assistant 的回答上算 loss", ORANGE),
            ("（可选）RLHF", "让回答更符合人类偏好", "同一问题的好/坏回答对\n奖励模型打分", "InternLM2-Chat 经过了这一步",
             PURPLE)]
    for i, (name, goal, data, loss, color) in enumerate(cols):
        x = 1.95 + i * 3.8
        box(ax, x, 2.75, 3.3, 0.5, name, color, size=11, weight="bold")
        note(ax, x, 2.2, goal, size=9, color="#000")
        box(ax, x, 1.45, 3.3, 0.8, data, "#ffffff", size=8.5)
        note(ax, x, 0.7, loss, size=8.5, color="#555")
    note(ax, 5.75, 0.2, "三种都可以是全参数，也可以是 LoRA / QLoRA：“学什么”和“更新哪些参数”是两个独立的选择", size=8.5,
         color="#555")
    return fig


def xtuner_flow():
    fig, ax = canvas(12.5, 2.4)
    steps = [("数据\ndata.jsonl", GREY), ("配置\nconfig.py", BLUE), ("xtuner train", ORANGE), ("iter_N.pth", GREY),
             ("xtuner convert\npth_to_hf", ORANGE), ("adapter/\nLoRA 适配器", GREY), ("xtuner convert\nmerge", ORANGE),
             ("merged/\n完整模型", GREEN)]
    xs = [0.8 + i * 1.57 for i in range(len(steps))]
    for x, (text, color) in zip(xs, steps, strict=True):
        box(ax, x, 1.35, 1.35, 0.75, text, color, size=8.5)
    for a, b in zip(xs, xs[1:], strict=False):
        arrow(ax, (a + 0.68, 1.35), (b - 0.68, 1.35))
    note(ax, 6.25, 0.35, "橙色是 XTuner 的命令；camp.finetune 按顺序运行它们，每一步的命令行都记在运行目录的 jobs/*/job.json 里",
         size=8.5, color="#555")
    return fig


def finetune_memory():
    from camp.training import plan as planner

    arch = planner.model_arch("internlm2_5-7b-chat")
    rows = {}
    for method, label in (("full", "全参数微调"), ("lora", "LoRA r=64"), ("qlora", "QLoRA r=64")):
        mem = planner.estimate(arch, method=method, max_length=2048, dtype="bfloat16", device="cuda")
        rows[label] = mem
    return charts.finetune_memory_chart(
        rows, budget_gb=24, title="InternLM2.5-7B-Chat 微调一步要多少显存（max_length 2048，batch 1，梯度检查点）").figure


# ------------------------------------------------------------------------------------------------- 04 evaluate
def opencompass_flow():
    fig, ax = canvas(12.5, 2.8)
    box(ax, 1.2, 1.9, 1.9, 0.65, "模型配置\nHF 模型 / API", BLUE, size=9)
    box(ax, 1.2, 0.85, 1.9, 0.65, "数据集配置\n题目 + 打分方式", GREEN, size=9)
    steps = [("划分任务\npartition", GREY), ("推理\ninfer → predictions/", ORANGE), ("评估\neval → results/", ORANGE),
             ("汇总\nsummary/*.csv", GREEN)]
    xs = [4.0 + i * 2.35 for i in range(len(steps))]
    for x, (text, color) in zip(xs, steps, strict=True):
        box(ax, x, 1.38, 1.95, 0.8, text, color, size=8.5)
    arrow(ax, (2.15, 1.9), (3.0, 1.5))
    arrow(ax, (2.15, 0.85), (3.0, 1.25))
    for a, b in zip(xs, xs[1:], strict=False):
        arrow(ax, (a + 0.98, 1.38), (b - 0.98, 1.38))
    note(ax, 6.3, 0.2, "模型 × 数据集 = 一个个小任务，可以并行、可以提交到集群；调试时 --debug 让它们在一个进程里依次运行",
         size=8.5, color="#555")
    return fig


def evaluation_modes():
    fig, ax = canvas(12.5, 3.6)
    # gen
    box(ax, 2.1, 3.15, 3.6, 0.45, "客观评测 · 生成式（gen）", GREEN, size=10, weight="bold")
    note(ax, 2.1, 2.35, "题目 + 选项 → 模型自由作答\n“答案是 B，因为……”\n→ 从回答里提取选项字母，和标准答案比", size=8.5)
    note(ax, 2.1, 1.2, "考的是模型真正会说的话\n适合对话模型、问答题、数学题\n要处理格式（提取答案）", size=8.5, color="#555")
    # ppl
    box(ax, 6.25, 3.15, 3.6, 0.45, "客观评测 · 困惑度（ppl）", TEAL, size=10, weight="bold")
    for i, (opt, ppl) in enumerate((("A", 8.1), ("B", 2.3), ("C", 6.7), ("D", 9.4))):
        y = 2.6 - i * 0.3
        w = ppl / 10 * 1.6
        ax.add_patch(FancyBboxPatch((5.55, y - 0.1), w, 0.2, boxstyle="square,pad=0",
                                    fc="#59a14f" if opt == "B" else "#bbbbbb", ec="none"))
        note(ax, 5.3, y, f"题目+{opt}", size=8, ha="right")
        note(ax, 5.6 + w, y, f" {ppl}", size=8, ha="left")
    note(ax, 6.25, 1.2, "把每个选项接在题目后面，算模型觉得它\n有多“意外”（困惑度）；最不意外的就是答案\n不用生成，适合基座模型、选择题", size=8.5,
         color="#555")
    # subjective
    box(ax, 10.4, 3.15, 3.6, 0.45, "主观评测", PURPLE, size=10, weight="bold")
    note(ax, 10.4, 2.35, "开放问题：写一首诗、安慰一个人\n没有唯一标准答案\n→ 人或“裁判模型”打分 / 两两比较胜率", size=8.5)
    note(ax, 10.4, 1.2, "OpenCompass 支持 JudgeLLM 打分\n和 CompassArena 对战", size=8.5, color="#555")
    note(ax, 6.25, 0.3, "这一课的题：选择题用 gen + 选项匹配（accuracy），自我认知题用 gen + “包含名字”（contains）",
         size=8.5, color="#555")
    return fig


# ------------------------------------------------------------------------------------------------- 05 deploy
def lmdeploy_engines():
    fig, ax = canvas(12, 3.2)
    box(ax, 1.4, 1.6, 2.2, 1.0, "客户端\nOpenAI SDK / camp.chat\nOpenCompass / Lagent", BLUE, size=8.5)
    box(ax, 4.6, 1.6, 2.4, 1.0, "lmdeploy serve api_server\n/v1/chat/completions\n端口 23333", GREY, size=8.5)
    box(ax, 8.6, 2.4, 4.0, 0.85, "TurboMind 引擎（C++/CUDA）\n最快；持续批处理、分块 KV cache、AWQ 4bit 内核", ORANGE, size=8.5)
    box(ax, 8.6, 0.95, 4.0, 0.85, "PyTorch 引擎（纯 Python）\n支持的模型更多、易扩展；速度稍慢", TEAL, size=8.5)
    arrow(ax, (2.5, 1.6), (3.4, 1.6), "HTTP")
    arrow(ax, (5.8, 1.8), (6.6, 2.35))
    arrow(ax, (5.8, 1.4), (6.6, 1.0))
    note(ax, 5.6, 2.55, "--backend turbomind", size=8, color="#333")
    note(ax, 5.6, 0.7, "--backend pytorch", size=8, color="#333")
    note(ax, 6.0, 0.15, "同一个接口，换引擎只改一个参数；CPU 上 camp 用 transformers serve 提供同样的 OpenAI 接口", size=8.5,
         color="#555")
    return fig


def quantization():
    fig, ax = canvas(12, 3.0)
    box(ax, 2.0, 2.2, 3.2, 0.7, "W4A16：权重 4 bit，激活 16 bit", ORANGE, size=10, weight="bold")
    for i in range(8):
        ax.add_patch(FancyBboxPatch((0.5 + i * 0.38, 1.05), 0.34, 0.5, boxstyle="square,pad=0",
                                    fc="#f28e2b" if i % 4 else "#4e79a7", ec="none"))
    note(ax, 2.0, 0.7, "每 128 个权重一组：int4 数值 + 一个 fp16 缩放 + 一个零点\n≈ 0.52 字节/参数（bf16 是 2 字节）", size=8.5)
    box(ax, 6.0, 2.2, 3.0, 0.7, "计算时反量化回 fp16 再乘", GREY, size=9)
    note(ax, 6.0, 1.25, "解码时 GPU 大部分时间在“搬权重”\n权重变成 1/4，搬得快 → 生成更快\nAWQ 按激活的重要性保护关键权重", size=8.5)
    box(ax, 10.0, 2.2, 3.4, 0.7, "KV cache int8 / int4", GREEN, size=10, weight="bold")
    note(ax, 10.0, 1.25, "对话越长、用户越多，KV cache 越大\nint8 省一半、int4 省四分之三\n→ 更长的上下文、更多并发；精度略降", size=8.5)
    note(ax, 6.0, 0.15, "命令：lmdeploy lite auto_awq（权重量化，一次）· lmdeploy serve api_server --quant-policy 8（KV，启动时）",
         size=8.5, color="#555")
    return fig


def serving_memory():
    from camp.runtime import hardware
    from camp.serving import memory
    from camp.training import plan as planner

    arch = planner.model_arch("internlm2_5-7b-chat")
    prof = hardware.Profile("gpu-24g", device="cuda", dtype="bfloat16", default_model="internlm2_5-7b-chat")
    plans = {"bf16 权重 + fp16 KV": memory.plan_serving(arch, prof, quant="kv16"),
             "bf16 权重 + KV int8": memory.plan_serving(arch, prof, quant="kv8"),
             "bf16 权重 + KV int4": memory.plan_serving(arch, prof, quant="kv4"),
             "W4A16 + fp16 KV": memory.plan_serving(arch, prof, quant="kv16", model_format="awq"),
             "W4A16 + KV int8": memory.plan_serving(arch, prof, quant="kv8", model_format="awq")}
    return charts.serving_memory_chart(plans, title="InternLM2.5-7B-Chat 在 24 GB 显卡上：KV cache 能装多少 token").figure


# ------------------------------------------------------------------------------------------------- 06 agents
def react():
    fig, ax = canvas(12, 3.6)
    box(ax, 1.2, 1.8, 1.8, 0.8, "用户问题\n58 乘以 27？", BLUE, size=9)
    box(ax, 4.0, 2.8, 2.4, 0.6, "Thought 思考\n需要计算，调用计算器", GREY, size=8.5)
    box(ax, 7.5, 2.8, 2.6, 0.6, "Action 行动\nCalculator {\"expression\": \"58*27\"}", ORANGE, size=8)
    box(ax, 10.4, 1.8, 2.2, 0.8, "工具执行\n（沙箱里的代码、\n搜索、计算器）", TEAL, size=8.5)
    box(ax, 7.5, 0.8, 2.6, 0.6, "Observation / Response\n1566", GREEN, size=8.5)
    box(ax, 4.0, 0.8, 2.4, 0.6, "Final Answer\n58 × 27 = 1566", PURPLE, size=8.5)
    arrow(ax, (2.1, 2.05), (2.8, 2.7))
    arrow(ax, (5.2, 2.8), (6.2, 2.8))
    arrow(ax, (8.8, 2.6), (9.7, 2.15))
    arrow(ax, (9.7, 1.45), (8.8, 0.95))
    arrow(ax, (6.2, 0.95), (4.6, 2.5), "不够就再想、再调用", rad=-0.2, offset=(0.4, 0.1))
    arrow(ax, (6.2, 0.75), (5.2, 0.75), "够了")
    note(ax, 6.0, 0.12, "模型只写文字；智能体框架（Lagent）解析 Action、真的去调用工具，再把结果作为 Observation 发回给模型",
         size=8.5, color="#555")
    return fig


# ------------------------------------------------------------------------------------------------- 07 multimodal
def vlm_architecture():
    from matplotlib.patches import Rectangle

    fig, ax = canvas(11, 5.2)

    def rect(x, y, w, h, color):
        ax.add_patch(Rectangle((x, y), w, h, fc=color, ec="#666666", lw=0.8))

    for i in range(3):  # the picture, cut into patches
        for j in range(3):
            rect(0.3 + 0.42 * j, 3.2 + 0.42 * i, 0.42, 0.42, RED if j == 0 else (BLUE if j == 2 else "#ffffff"))
    note(ax, 0.93, 2.95, "图片 picture\n切成小块 patches", size=10)
    arrow(ax, (1.62, 3.83), (2.1, 3.83))
    box(ax, 3.05, 3.83, 1.9, 1.05, "视觉编码器\nvision encoder\n(CLIP / InternViT)", GREEN)
    arrow(ax, (4.0, 3.83), (4.45, 3.83))
    for k in range(4):
        rect(4.5 + 0.22 * k, 3.45, 0.18, 0.75, GREEN)
    note(ax, 4.91, 3.15, "每块一个特征\none feature per patch", size=9)
    arrow(ax, (5.42, 3.83), (5.85, 3.83))
    box(ax, 6.65, 3.83, 1.6, 1.05, "投影层\nprojector\n(MLP)", ORANGE)
    arrow(ax, (6.65, 3.3), (6.65, 2.45))
    note(ax, 6.8, 2.9, "图像 token\nimage tokens", size=10, ha="left")
    seq = [("<s>", GREY), ("user", GREY)] + [("img", ORANGE)] * 4 + [(w, "#ffffff") for w in ("左边", "的", "颜色", "？")]
    for n, (text, color) in enumerate(seq):  # the language model's input sequence
        rect(1.0 + 0.83 * n, 1.8, 0.78, 0.55, color)
        note(ax, 1.39 + 0.83 * n, 2.075, text, size=9, color="#000")
    note(ax, 1.0, 2.55, "语言模型的输入：<image> 占位符被换成图像 token，和文字 token 排在一起", size=10, ha="left",
         color="#000")
    arrow(ax, (5.1, 1.8), (5.1, 1.35))
    box(ax, 5.1, 0.8, 5.0, 1.0, "大语言模型 LLM (InternLM2 / tiny)\n像读文字一样读图像 token，写出回答：“红色”", BLUE, size=11)
    for n, line in enumerate(["可训练 trainable", "· 预训练：投影层（对齐）", "· 指令微调：投影层 + LLM",
                              "  (LoRA / QLoRA / 全量)", "· 视觉编码器常冻结"]):
        note(ax, 8.6, 4.65 - 0.3 * n, line, size=9, ha="left", color="#555" if n == 0 else "#000")
    return fig


def tiny_vl_scenes():
    from camp.multimodal import scenes

    fig = Figure(figsize=(10, 3.1))
    axes = fig.subplots(1, 4)
    for ax, sc in zip(axes, scenes.scenes(4, seed=5), strict=True):
        ax.imshow(sc.image(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(scenes.colour_questions(sc)[-1][1].replace("，", "，\n"), fontsize=9)
    fig.suptitle("tiny-vl 的训练图片（48 × 48 像素，程序生成） / tiny-vl's training pictures", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------------- 08 RAG
def rag_pipeline():
    fig, ax = canvas(12, 4.4)
    note(ax, 0.15, 4.15, "离线：建知识库 / offline: build the knowledge base", size=10, color="#1e3a8a", ha="left",
         weight="bold")
    note(ax, 0.15, 1.95, "在线：每个问题 / online: every question", size=10, color="#14532d", ha="left", weight="bold")
    w, h, xs = 1.95, 0.95, [1.2, 3.6, 6.0, 8.4, 10.8]

    def row(y, steps, color, end_color):
        for i, (x, text) in enumerate(zip(xs, steps, strict=True)):
            box(ax, x, y, w, h, text, end_color if i == len(xs) - 1 else color, size=9)
        for a, b in zip(xs, xs[1:], strict=False):
            arrow(ax, (a + w / 2, y), (b - w / 2, y))

    row(3.2, ["文档\nmd / txt / html / pdf", "切块 chunk\n~300 字，保留段落与标题", "嵌入 embed\nUSE 多语言 512 维",
              "索引 index\nfaiss 向量 + BM25(jieba)", "知识库\n段落 + 出处(文件:行)"], BLUE, PURPLE)
    row(0.9, ["问题 query\n“显存不够怎么办？”", "检索 retrieve\n稠密 + BM25 → 融合", "提示词 prompt\n资料：[1]…[k] + 问题",
              "大模型 LLM\n任意 OpenAI 兼容端点", "回答 + 来源\nanswer with sources"], GREEN, ORANGE)
    arrow(ax, (xs[4], 3.2 - h / 2), (xs[1] + 0.3, 0.9 + h / 2), "top-k 段落", rad=-0.08, offset=(0, 0.2))
    return fig


FIGURES = {
    "chain": chain, "timeline": timeline, "decision_flow": decision_flow, "needle": needle,
    "model_memory": lambda: charts.memory_chart(__import__("camp").catalogue()).figure,
    "envs": envs, "generation": generation, "tunnel": tunnel,
    "lora": lora, "finetune_kinds": finetune_kinds, "xtuner_flow": xtuner_flow, "finetune_memory": finetune_memory,
    "opencompass_flow": opencompass_flow, "evaluation_modes": evaluation_modes,
    "lmdeploy_engines": lmdeploy_engines, "quantization": quantization, "serving_memory": serving_memory,
    "react": react, "vlm_architecture": vlm_architecture, "tiny_vl_scenes": tiny_vl_scenes,
    "rag_pipeline": rag_pipeline,
}


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        with charts.style():
            fig = draw()
        path = out / f"{name}.svg"
        path.write_text(charts.svg_text(fig, tight=not getattr(fig, "camp_diagram", False)), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for p in main(target):
        print(p)
