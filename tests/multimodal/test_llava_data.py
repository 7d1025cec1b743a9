"""LLaVA datasets are checked before training: every bad record named by file and line."""

from __future__ import annotations

import json

import pytest

from camp.data.records import DataError
from camp.multimodal import llava_data, scenes


@pytest.fixture()
def dataset(tmp_path):
    return scenes.write_llava(tmp_path, 6, seed=1, task="side")


def test_generated_dataset_is_valid(dataset):
    d = llava_data.load(dataset)
    assert len(d) == 6 and d.n_images == 6 and d.image_folder == dataset.parent
    assert llava_data.looks_like_llava(dataset)
    row = json.loads(dataset.read_text())[0]
    assert row["conversations"][0]["value"].startswith("<image>\n")
    assert row["conversations"][1]["value"] in ("左边", "右边", "left", "right")


def _lines(path):
    """The line on which each record of a JSON list starts (the file is indented by write_llava)."""
    return [n for n, line in enumerate(path.read_text().splitlines(), 1) if line == " {"]


def test_each_problem_names_file_and_line(dataset, tmp_path):
    rows = json.loads(dataset.read_text())
    rows[0]["image"] = "images/missing.png"
    rows[1]["conversations"][0]["value"] = "红色的方块在哪一边？"  # no <image>
    (tmp_path / "images" / "bad.png").write_bytes(b"not a picture at all")
    rows[2]["image"] = "images/bad.png"
    good = (tmp_path / rows[3]["image"]).read_bytes()
    (tmp_path / "images" / "cut.png").write_bytes(good[: len(good) // 2])
    rows[3]["image"] = "images/cut.png"
    rows[4]["conversations"][0]["value"] = "<image>\n<image>\nQ"
    rows[5]["conversations"] = [{"from": "human", "value": "<image>\nQ"}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    lines = _lines(bad)
    problems = llava_data.validate(bad)
    name = str(bad)
    assert any(p.startswith(f"{name}:{lines[0]}:") and "missing.png" in p and "not found" in p for p in problems)
    assert any(p.startswith(f"{name}:{lines[1]}:") and "no <image> placeholder" in p for p in problems)
    assert any(p.startswith(f"{name}:{lines[2]}:") and "not an image" in p for p in problems)
    assert any(p.startswith(f"{name}:{lines[3]}:") and "truncated" in p for p in problems)
    assert any(p.startswith(f"{name}:{lines[4]}:") and "2 <image>" in p for p in problems)
    assert any(p.startswith(f"{name}:{lines[5]}:") and "gpt" in p for p in problems)
    with pytest.raises(DataError) as err:
        llava_data.load(bad)
    assert f"{name}:{lines[0]}" in str(err.value)


def test_jsonl_and_other_image_folder(dataset, tmp_path):
    rows = json.loads(dataset.read_text())
    other = tmp_path / "elsewhere"
    other.mkdir()
    jl = other / "data.jsonl"
    jl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert llava_data.validate(jl)[0].startswith(f"{jl}:1:")  # images are not beside this file
    assert llava_data.load(jl, image_folder=tmp_path).n_images == 6
    assert llava_data.validate(jl, image_folder=tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such image folder"]


def test_text_only_records_and_not_json(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": "1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}\n'
                 '{"id": "2", "conversations": [{"from": "human", "value": "<image>\\nhi"}, {"from": "gpt", "value": "x"}]}\n'
                 "not json\n")
    problems = llava_data.validate(f)
    assert problems[0].startswith(f"{f}:2:") and "no 'image' field" in problems[0]
    assert problems[1].startswith(f"{f}:3:") and "invalid JSON" in problems[1]
