"""Needle in a haystack: hide one fact at a chosen depth of a long text and ask for it.

    r = camp.conversation.needle.probe("internlm2-chat-1_8b", profile="gpu-24g")
    r.table      # length, depth, found, answer
    r.plot()     # the grid: green = found, red = missed

The InternLM2 report shows this grid for contexts up to 200k tokens. On a course model (GPU) the haystack is
the course texts (assets/corpus) repeated to `lengths` characters, the needle a sentence with a secret code, and
the question asks for the code. The embedded tiny model cannot read course text, so on it the probe keeps the
idea and changes the material to what tiny was trained on: a row of words with one number hidden in it, and
tiny's trained question "which numbers are in this?". Its lengths are words, not thousands of tokens, and the
result says so (`kind == "tiny"`): it shows the method and where a small model's trained context ends, not
InternLM2's long-context result.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
GPU_LENGTHS = (2_000, 8_000, 32_000)  # characters of Chinese text: ~1.3k to ~21k InternLM2 tokens
TINY_LENGTHS = (4, 8, 16, 32)  # words; tiny was trained on rows of 2 to 10 items
NEEDLE = "实战营的秘密口令是 {code}。"
QUESTION = "根据上面的材料，实战营的秘密口令是多少？只回答口令。"
TINY_QUESTION = "\n这里面的数字依次是？"  # the question tiny's copy pre-training used (camp.models.tiny)


@dataclass
class NeedleResult:
    model: str
    kind: str  # "course" (a real chat model on course text) | "tiny" (the tiny model on rows of words)
    unit: str  # what `length` counts: "characters" | "words"
    rows: list = field(default_factory=list)  # {length, depth, code, found, answer}

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["length", "depth", "code", "found", "answer"])

    @property
    def accuracy(self) -> float:
        return sum(r["found"] for r in self.rows) / len(self.rows) if self.rows else 0.0

    def grid(self):
        """found (1/0) as a lengths × depths table."""
        t = self.table
        return t.pivot_table(index="depth", columns="length", values="found", aggfunc="mean", sort=True)

    def plot(self):
        """The lengths × depths grid (green found, red missed) as a camp.ui.charts.Chart."""
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure

        from camp.ui.charts import Chart, style

        g = self.grid()
        with style():
            fig = Figure(figsize=(1.6 + 1.1 * len(g.columns), 3.0), layout="constrained")
            ax = fig.add_subplot()
            ax.imshow(g.values, cmap=ListedColormap(["#e15759", "#59a14f"]), vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(g.columns)), [f"{c:,}" for c in g.columns])
            ax.set_yticks(range(len(g.index)), [f"{d:.0%}" for d in g.index])
            ax.set_xlabel("草堆长度（" + ("字" if self.unit == "characters" else "个词") + "）")
            ax.set_ylabel("针的深度")
            for i in range(len(g.index)):
                for j in range(len(g.columns)):
                    ax.text(j, i, "✓" if g.values[i, j] >= 0.5 else "✗", ha="center", va="center", color="white")
            what = "tiny 模型上的演示（不是 InternLM2 的结果）" if self.kind == "tiny" else "大海捞针"
            ax.set_title(f"{what}: {self.model}", fontsize=9)
        return Chart(fig)

    def __repr__(self) -> str:
        return (f"<NeedleResult {self.model} ({self.kind}): {sum(r['found'] for r in self.rows)} of "
                f"{len(self.rows)} found>")


# ------------------------------------------------------------------------------------------------- haystacks
def course_text() -> str:
    """The Chinese paragraphs of the course texts (assets/corpus), the haystack's material."""
    from camp.runtime import config

    paras = []
    for f in sorted((config.assets_dir() / "corpus").glob("*.md")):
        for p in f.read_text(encoding="utf-8").split("\n\n"):
            p = p.strip()
            if p and not p.startswith(("#", "```")) and len(re.findall(r"[\u4e00-\u9fff]", p)) > len(p) / 3:
                paras.append(p.replace("\n", ""))
    return "\n".join(paras)


def haystack(length: int, depth: float, code: str, *, material: str | None = None) -> str:
    """`length` characters of course text with the needle inserted at a sentence end near `depth` (0..1)."""
    material = material or course_text()
    text = (material + "\n") * (length // max(1, len(material)) + 1)
    text = text[:length]
    at = int(depth * len(text))
    if 0 < at < len(text):  # move to the next sentence end so the needle does not split a sentence
        m = re.search(r"[。！？\n]", text[at:])
        at = at + m.end() if m else len(text)
    return text[:at] + NEEDLE.format(code=code) + text[at:]


def tiny_haystack(words: int, depth: float, code: str, seed: int = 0) -> str:
    """A row of `words` words (no digits) with the number `code` at `depth`, in tiny's trained format."""
    from camp.models.tiny import _WORDS_ZH

    rng = random.Random(seed)
    items = [rng.choice([w for w in _WORDS_ZH if not any(c.isdigit() for c in w)]) for _ in range(words)]
    items.insert(round(depth * words), code)
    return " ".join(items) + TINY_QUESTION


# ------------------------------------------------------------------------------------------------- the probe
def _is_tiny(folder: Path) -> bool:
    from camp.models import tiny

    try:
        return Path(folder).resolve() == tiny.default_dir().resolve()
    except OSError:
        return False


def probe(model="auto", *, profile=None, lengths=None, depths=DEPTHS, seed: int = 0, max_new_tokens: int = 24,
          show: bool = True) -> NeedleResult:
    """Ask for the needle at every (length, depth); greedy, one fresh conversation per question. lengths: in
    characters on a course model (default GPU_LENGTHS), in words on the tiny model (default TINY_LENGTHS)."""
    from camp.conversation.session import chat
    from camp.models.hub import resolve
    from camp.runtime import progress

    folder = Path(resolve(model, profile=profile))
    tiny = _is_tiny(folder)
    lengths = tuple(lengths or (TINY_LENGTHS if tiny else GPU_LENGTHS))
    name = str(model) if str(model) != "auto" else folder.name
    if isinstance(model, os.PathLike):
        name = folder.name
    session = chat(folder, max_new_tokens=max_new_tokens, temperature=0)
    rng = random.Random(seed)
    material = None if tiny else course_text()
    result = NeedleResult(name, "tiny" if tiny else "course", "words" if tiny else "characters")
    view = progress.get(show)
    for length in lengths:
        for depth in depths:
            code = str(rng.randint(1000, 9999))
            if tiny:
                prompt = tiny_haystack(length, depth, code, seed=rng.randint(0, 10**6))
            else:
                prompt = haystack(length, depth, code, material=material) + "\n\n" + QUESTION
            answer = session.fork().ask(prompt).strip()
            found = re.search(rf"(?<!\d){code}(?!\d)", answer) is not None  # the number itself, not inside another
            result.rows.append({"length": length, "depth": depth, "code": code, "found": found,
                                "answer": answer[:80]})
        hits = sum(r["found"] for r in result.rows if r["length"] == length)
        view.say(f"needle: length {length:,} {result.unit}: {hits} of {len(depths)} found")
    return result
