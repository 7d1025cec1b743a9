"""The generated pictures tiny-vl learns from: two coloured squares on white, one on the left, one on the right.

Everything is deterministic for a seed, drawn with numpy at the model's own size (SIZE px), so the pixels the model
trains on are exactly the pixels a PNG of the same scene gives back. Questions come in Chinese and English:

  pre-training (tiny-vl answers these after its build)     the lesson's fine-tune (it cannot before)
  左边的方块是什么颜色？ → 红色                               红色的方块在哪一边？ → 左边
  What colour is the right square? → blue                   Which side is the red square on? → left
  描述这张图片。 → 左边是红色方块，右边是蓝色方块。
(An English description, 30 tokens long, made the build twice as slow for no new skill: left out.)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SIZE = 48  # pixels; the vision tower's image size
# (Chinese name, English name, RGB): far apart, so a 48-px picture shows each one unmistakably
COLOURS = [
    ("红色", "red", (220, 30, 30)),
    ("绿色", "green", (30, 160, 60)),
    ("蓝色", "blue", (40, 70, 220)),
    ("黄色", "yellow", (235, 200, 20)),
    ("紫色", "purple", (140, 50, 170)),
    ("黑色", "black", (25, 25, 25)),
]
SIDES = {"left": ("左边", "left"), "right": ("右边", "right")}


@dataclass(frozen=True)
class Scene:
    left: int  # colour index
    right: int
    boxes: tuple  # ((x, y, side) of the left square, (x, y, side) of the right one)

    def image(self):
        """The picture as a uint8 array (SIZE, SIZE, 3)."""
        import numpy as np

        a = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
        for colour, (x, y, s) in zip((self.left, self.right), self.boxes, strict=True):
            a[y : y + s, x : x + s] = COLOURS[colour][2]
        return a

    def pil(self):
        from PIL import Image

        return Image.fromarray(self.image())


def scene(rng: random.Random) -> Scene:
    left, right = rng.sample(range(len(COLOURS)), 2)
    boxes = []
    for half in (0, 1):
        s = rng.randint(10, 16)
        x = rng.randint(2, SIZE // 2 - s - 2) + half * SIZE // 2
        y = rng.randint(4, SIZE - s - 4)
        boxes.append((x, y, s))
    return Scene(left, right, tuple(boxes))


def scenes(n: int, seed: int) -> list[Scene]:
    rng = random.Random(seed)
    return [scene(rng) for _ in range(n)]


# ------------------------------------------------------------------------------------------ questions
def colour_questions(sc: Scene) -> list[tuple[str, str]]:
    """What tiny-vl learns in its build: the colour on each side, and the whole scene, in both languages."""
    lz, le = COLOURS[sc.left][0], COLOURS[sc.left][1]
    rz, re_ = COLOURS[sc.right][0], COLOURS[sc.right][1]
    return [
        ("左边的方块是什么颜色？", lz),
        ("右边的方块是什么颜色？", rz),
        ("What colour is the left square?", le),
        ("What colour is the right square?", re_),
        ("描述这张图片。", f"左边是{lz}方块，右边是{rz}方块。"),
    ]


def side_questions(sc: Scene) -> list[tuple[str, str]]:
    """What the lesson's fine-tune teaches: on which side a colour is (tiny-vl never saw these questions)."""
    out = []
    for colour, side in ((sc.left, "left"), (sc.right, "right")):
        zh, en, _ = COLOURS[colour]
        out.append((f"{zh}的方块在哪一边？", SIDES[side][0]))
        out.append((f"Which side is the {en} square on?", SIDES[side][1]))
    return out


TASKS = {"colour": colour_questions, "side": side_questions}


def examples(n_images: int, seed: int, task: str = "side") -> list[tuple[Scene, str, str]]:
    """(scene, question, answer) for n_images scenes: one question of `task` per image, chosen by the seed."""
    rng = random.Random(seed * 7919 + 1)
    out = []
    for sc in scenes(n_images, seed):
        q, a = rng.choice(TASKS[task](sc))
        out.append((sc, q, a))
    return out


def write_llava(folder: str | Path, n_images: int, seed: int, task: str = "side") -> Path:
    """A LLaVA-format dataset in `folder`: images/NNNN.png and data.json
    ([{"id", "image", "conversations": [{"from": "human", "value": "<image>\\nQ"}, {"from": "gpt", "value": A}]}]).
    Returns the JSON file."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (sc, q, a) in enumerate(examples(n_images, seed, task)):
        name = f"images/{seed}-{i:04d}.png"
        sc.pil().save(folder / name)
        rows.append({"id": f"{seed}-{i:04d}", "image": name,
                     "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]})
    path = folder / "data.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path
