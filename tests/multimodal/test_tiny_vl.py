"""tiny-vl: built once per machine, loaded with the same logits by transformers 4.48 (xtuner env), 4.57
(opencompass env) and 5.x (core), and answering pictures it never saw."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from camp.multimodal import scenes, score, tiny_vl
from camp.runtime import markers

pytestmark = pytest.mark.integration

# Runs in each env: ids, pixels, logits and the greedy answer for one picture and question.
PROBE = r'''
import json, sys
import numpy as np
import torch, transformers
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
folder, image, question = sys.argv[1:4]
proc = AutoProcessor.from_pretrained(folder)
msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
inputs = proc(text=text, images=[Image.open(image).convert("RGB")], return_tensors="pt")
kw = {"dtype": torch.float32} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": torch.float32}
model = LlavaForConditionalGeneration.from_pretrained(folder, **kw).eval()
with torch.no_grad():
    logits = model(**inputs).logits[0]
    out = model.generate(**inputs, max_new_tokens=48, do_sample=False)
answer = proc.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
np.save(sys.argv[4], logits.numpy())
print(json.dumps({"version": transformers.__version__, "text": text, "ids": inputs["input_ids"][0].tolist(),
                  "pixels": float(inputs["pixel_values"].sum()), "answer": answer}, ensure_ascii=False))
'''


@pytest.fixture(scope="module")
def folder():
    return tiny_vl.ensure()


def _probe(python, folder, image, question, out):
    script = out.parent / "probe.py"
    script.write_text(PROBE)
    r = subprocess.run([str(python), str(script), str(folder), str(image), question, str(out)], capture_output=True,
                       text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                    "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _env_python(env, tool_python):
    """The tool env's python: as it is when it exists (a registered one too), else created (`make test` makes them)."""
    from camp.runtime import envs
    from camp.runtime.errors import CampError

    try:
        return envs.python(env)
    except CampError:
        return tool_python(env)


def test_same_logits_in_three_transformers_lines(folder, tmp_path, tool_python):
    import sys

    sc = scenes.scenes(1, seed=4242)[0]
    image = tmp_path / "p.png"
    sc.pil().save(image)
    question, answer = scenes.colour_questions(sc)[4]  # the description: the longest answer
    runs = {}
    for env in ("core", "xtuner", "opencompass"):
        py = sys.executable if env == "core" else _env_python(env, tool_python)
        runs[env] = _probe(py, folder, image, question, tmp_path / f"{env}.npy")
    versions = {env: r["version"].split(".")[:2] for env, r in runs.items()}
    assert versions["xtuner"] == ["4", "48"] and versions["opencompass"] == ["4", "57"] and versions["core"][0] == "5"
    core = np.load(tmp_path / "core.npy")
    for env, r in runs.items():
        assert r["ids"] == runs["core"]["ids"], env
        assert r["ids"].count(json.loads((folder / "config.json").read_text())["image_token_index"]) == 36
        assert r["pixels"] == pytest.approx(runs["core"]["pixels"], abs=1e-3), env
        assert np.abs(np.load(tmp_path / f"{env}.npy") - core).max() < 1e-4, env
        assert r["answer"] == answer, (env, r["answer"])


def test_builder_ids_match_the_processor(folder):
    """The build trains on the ids the processor makes at inference, and on its pixel values."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    enc = tiny_vl.Encoder(proc.tokenizer, json.loads((folder / "config.json").read_text())["image_token_index"])
    sc = scenes.scenes(1, seed=5)[0]
    for q, a in scenes.colour_questions(sc):
        text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]},
                                         {"role": "assistant", "content": a}], tokenize=False)
        inputs = proc(text=text, images=[sc.pil()], return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        assert ids[: len(enc.prompt(q)) + len(enc.answer(a))] == enc.prompt(q) + enc.answer(a)
        assert np.allclose(inputs["pixel_values"].numpy(), tiny_vl.pixel_values([sc.image()]).numpy(), atol=1e-5)


def test_marker_and_rebuild_rules(folder, tmp_path):
    info = markers.read(folder)
    assert info["kind"] == "tiny-vl" and info["held_out_exact"] >= 0.99 and info["recipe_sha256"] == tiny_vl.recipe_sha256()
    assert tiny_vl.is_complete(folder)
    from camp.models import tiny

    other_tiny = tmp_path / "tiny"
    shutil.copytree(tiny.default_dir(), other_tiny)
    with open(other_tiny / "model.safetensors", "r+b") as f:  # a rebuilt tiny: other weights, same size …
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    marker = other_tiny / markers.MARKER  # … and a marker that records them, as a finished rebuild's does
    record = json.loads(marker.read_text())
    record["weights_sha256"] = hashlib.sha256((other_tiny / "model.safetensors").read_bytes()).hexdigest()
    marker.write_text(json.dumps(record))
    assert tiny.is_complete(other_tiny)
    assert not tiny_vl.is_complete(folder, tiny_dir=other_tiny)
    copy = tmp_path / "vl"
    shutil.copytree(folder, copy)
    assert tiny_vl.is_complete(copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    assert not tiny_vl.is_complete(copy)  # tampered weights are not a finished build


def test_answers_pictures_it_never_saw(folder):
    import camp

    s = score.score("tiny-vl", score.held_out(30, seed=123, task="colour"))
    assert s.accuracy >= 0.95, s.wrong[:5]
    side = score.score("tiny-vl", score.held_out(30, seed=123, task="side"))
    assert side.accuracy <= 0.2  # not taught yet: the lesson's fine-tune teaches it
    assert camp.chat("tiny-vl").backend.vision
