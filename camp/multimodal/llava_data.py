"""LLaVA-format image datasets, checked before any training starts: every bad record named by file and line.

The format XTuner's LLaVA pipeline (and LLaVA itself) reads — a JSON list (or JSON Lines) next to an image folder:

    [{"id": "0001", "image": "images/0001.png",
      "conversations": [{"from": "human", "value": "<image>\\n红色的方块在哪一边？"},
                        {"from": "gpt", "value": "左边"}]}, …]

Checked: the JSON itself (camp.data.records reads it, with line numbers), `conversations` alternating human/gpt with
text in every turn, exactly one `<image>` placeholder in a record that has an image (none in one that has not), and
the image file: present under the image folder (default: the JSON's own folder), a readable, complete picture within
camp's size limits (camp.multimodal.images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from camp.data.records import DataError, _read
from camp.multimodal import images
from camp.runtime.errors import CampError

IMAGE_TOKEN = "<image>"
ROLES = ("human", "gpt")


@dataclass
class LlavaDataset:
    path: Path  # the JSON file
    image_folder: Path
    records: list  # the parsed records, as in the file
    n_images: int

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<LlavaDataset {self.path} — {len(self.records)} records, {self.n_images} images in {self.image_folder}>"


def looks_like_llava(source) -> bool:
    """A path to a .json/.jsonl file whose first record has `conversations` (LLaVA), not `messages` (text)."""
    if not isinstance(source, (str, Path)) or not Path(source).is_file():
        return False
    try:
        head = Path(source).read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return '"conversations"' in head and ('"from"' in head or '"image"' in head)


def _check_record(raw, where: str, folder: Path, seen: dict) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}: a record must be an object with 'image' and 'conversations'"]
    probs = []
    conv = raw.get("conversations")
    if not isinstance(conv, list) or not conv:
        return [f"{where}: field 'conversations': missing or empty — a list of {{'from': 'human'|'gpt', 'value': …}}"]
    n_tokens = 0
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            probs.append(f"{where}: conversations[{k}]: needs 'from' and a text 'value'")
            continue
        want = ROLES[k % 2]
        if turn.get("from") != want:
            probs.append(f"{where}: conversations[{k}]: 'from' is {turn.get('from')!r}, expected {want!r} "
                         "(turns alternate human, gpt, …)")
        if not turn["value"].strip():
            probs.append(f"{where}: conversations[{k}]: empty 'value'")
        n_tokens += turn["value"].count(IMAGE_TOKEN)
        if turn.get("from") == "gpt" and IMAGE_TOKEN in turn["value"]:
            probs.append(f"{where}: conversations[{k}]: {IMAGE_TOKEN} belongs in a human turn, not the answer")
    if len(conv) % 2:
        probs.append(f"{where}: conversations: ends with a human turn — each question needs a 'gpt' answer")
    image = raw.get("image")
    if image is None:
        if n_tokens:
            probs.append(f"{where}: has {IMAGE_TOKEN} but no 'image' field — name the picture, or remove "
                         f"{IMAGE_TOKEN}")
        return probs
    if not isinstance(image, str) or not image.strip():
        return probs + [f"{where}: field 'image': must be a file name relative to the image folder"]
    if n_tokens == 0:
        probs.append(f"{where}: no {IMAGE_TOKEN} placeholder — the first question must contain it "
                     f"(\"{IMAGE_TOKEN}\\n…\") so the model knows where the picture goes")
    elif n_tokens > 1:
        probs.append(f"{where}: {n_tokens} {IMAGE_TOKEN} placeholders for one image — keep exactly one")
    p = (folder / image).resolve()
    if str(p) in seen:
        problem = seen[str(p)]
    else:
        if not p.is_file():
            problem = f"image {image!r} not found in {folder}"
        else:
            try:
                images.check_bytes(p.read_bytes(), image)
                problem = None
            except CampError as exc:
                problem = str(exc)
        seen[str(p)] = problem
    if problem:
        probs.append(f"{where}: {problem}")
    return probs


def validate(path, image_folder=None) -> list[str]:
    """Every problem, one line each ("FILE:LINE: …"); [] when the dataset is fine."""
    name, items, problems = _read(path)
    folder = Path(image_folder).expanduser() if image_folder else Path(path).expanduser().resolve().parent
    if image_folder and not folder.is_dir():
        return [f"{folder}: no such image folder"]
    seen: dict = {}
    for where, raw in items:
        if isinstance(raw, str):  # a line that is not JSON
            problems.append(f"{where}: {raw}")
            continue
        problems += _check_record(raw, where, folder, seen)
    if not items and not problems:
        problems.append(f"{name}: no records")
    return problems


def load(path, image_folder=None) -> LlavaDataset:
    """The dataset, checked in full first: DataError lists every bad record with its file and line."""
    problems = validate(path, image_folder)
    if problems:
        raise DataError(problems, source=str(path))
    _, items, _ = _read(path)
    folder = Path(image_folder).expanduser() if image_folder else Path(path).expanduser().resolve().parent
    records = [raw for _, raw in items]
    return LlavaDataset(Path(path).expanduser().resolve(), folder.resolve(), records,
                        len({r["image"] for r in records if r.get("image")}))
