"""camp.models.shapes: the catalogue models' real architectures with random weights — exact shapes and parameter counts
at full scale (computed, not built), and a scaled-down build that loads like the real thing: the InternLM2 folder
with its remote code in XTuner's transformers 4.48, the normalised Llama folder in the core env's transformers 5."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from camp.models import shapes
from camp.runtime import markers
from camp.runtime.errors import CampError

# params (billions) the catalogue records for the published checkpoints
PUBLISHED = {"internlm2-chat-1_8b": 1.89, "internlm2_5-1_8b-chat": 1.89, "internlm2_5-7b-chat": 7.74}


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_full_shapes_are_the_published_ones(model):
    cfg = shapes.shape(model)
    tensors = shapes.tensor_shapes(cfg)
    params = sum(int(__import__("math").prod(s)) for s in tensors.values())
    assert round(params / 1e9, 2) == PUBLISHED[model]
    assert shapes.weight_bytes(cfg) == 2 * params  # bf16
    assert cfg["architectures"] == ["InternLM2ForCausalLM"] and cfg["torch_dtype"] == "bfloat16"
    assert cfg["vocab_size"] == 92544 and "modeling_internlm2.InternLM2ForCausalLM" in str(cfg["auto_map"])
    h, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    assert tensors["model.layers.0.attention.wqkv.weight"] == ((heads + 2 * kv) * (h // heads), h)


def test_ci_scale_keeps_what_is_not_width_or_depth():
    full, ci = shapes.shape("internlm2_5-7b-chat"), shapes.shape("internlm2_5-7b-chat", "ci")
    assert ci["hidden_size"] == 64 and ci["num_hidden_layers"] == 2
    assert ci["num_attention_heads"] // ci["num_key_value_heads"] == full["num_attention_heads"] // full[
        "num_key_value_heads"]  # the GQA ratio (4 for 7B)
    for k in ("vocab_size", "max_position_embeddings", "torch_dtype", "rope_scaling", "auto_map", "bias"):
        assert ci[k] == full[k]
    with pytest.raises(CampError, match="random-weight checkpoints are built for"):
        shapes.shape("tiny")
    with pytest.raises(CampError, match="scale"):
        shapes.shape("internlm2_5-7b-chat", "half")


def xtuner_python() -> Path:
    """The xtuner env's python through camp's one env policy (a registered env as it is; built when missing)."""
    from camp.runtime import envs, progress

    return envs.ensure("xtuner", view=progress.SILENT)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The ci-scale build; the remote code from $CAMP_INTERNLM2_CODE when set, else from the xtuner env."""
    home = tmp_path_factory.mktemp("shapes")
    code = os.environ.get("CAMP_INTERNLM2_CODE")
    if not code:
        r = subprocess.run([str(xtuner_python()), "-c", "import importlib.util as u; print(u.find_spec('xtuner')"
                            ".submodule_search_locations[0])"], capture_output=True, text=True, check=True)
        code = f"{r.stdout.strip()}/_lite/modelings/internlm2"
    mp = pytest.MonkeyPatch()
    mp.setenv("CAMP_HOME", str(home))
    try:
        llama = shapes.prepare("internlm2_5-1_8b-chat", scale="ci", code=code, show=False)
        yield shapes.default_dir("internlm2_5-1_8b-chat", "ci"), llama
    finally:
        mp.undo()


@pytest.mark.integration  # builds a checkpoint; the xtuner env supplies the remote code
def test_the_build_is_marked_and_normalised(built, monkeypatch):
    src, llama = built
    monkeypatch.setenv("CAMP_HOME", str(src.parent.parent))
    assert shapes.is_complete(src, "internlm2_5-1_8b-chat", "ci")
    marker = markers.read(src)
    assert marker["kind"] == shapes.KIND and marker["note"] == shapes.NOTE
    assert {"configuration_internlm2.py", "modeling_internlm2.py", "tokenizer.json"} <= set(marker["files"])
    assert shapes.origin(llama)["note"] == shapes.NOTE
    assert not any(f.suffix == ".py" for f in llama.iterdir()), "the normalised folder has no remote code"
    # a second call finds the complete build (nothing rebuilt: same marker time)
    assert shapes.build("internlm2_5-1_8b-chat", scale="ci", show=False) == src
    assert markers.read(src)["time"] == marker["time"]
    # a folder that is not a build is never overwritten
    other = src.parent / "other"
    other.mkdir()
    (other / "x.txt").write_text("keep")
    with pytest.raises(CampError, match="not a random-weight build"):
        shapes.build("internlm2_5-1_8b-chat", other, scale="ci", show=False)
    assert (other / "x.txt").read_text() == "keep"


@pytest.mark.integration  # builds a checkpoint; the xtuner env supplies the remote code
def test_tokenizer_has_the_real_id_space(built):
    from transformers import AutoTokenizer

    _, llama = built
    tok = AutoTokenizer.from_pretrained(llama)
    assert len(tok) == 92544
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<|im_end|>", "<|im_start|>"]) == [0, 1, 2, 92542, 92543]
    ids = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, tokenize=True,
                                  return_dict=True)["input_ids"]
    assert ids[:2] == [1, 92543] and ids[-1] > 2
    assert tok.decode([50000]).startswith("<shape")  # every id the model can emit decodes


@pytest.mark.integration  # builds a checkpoint; the xtuner env supplies the remote code
def test_both_folders_load_and_generate_without_stopping(built):
    """The InternLM2 folder through its remote code (xtuner env, transformers 4.48) and the Llama folder (core env,
    transformers 5) give the same first greedy tokens, and never emit a stop token (its head rows are zero)."""
    import torch
    from transformers import AutoModelForCausalLM

    src, llama = built
    xtuner_py = xtuner_python()
    prompt = [1, 92543, 300, 400, 92542, 92543]
    script = ("import sys, json, torch; from transformers import AutoModelForCausalLM as M; "
              "m = M.from_pretrained(sys.argv[1], trust_remote_code=True, torch_dtype=torch.float32); "
              f"x = torch.tensor([{prompt}]); "
              "print(json.dumps(m.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, do_sample=False, "
              "use_cache=False)[0, x.shape[1]:].tolist()))")
    r = subprocess.run([str(xtuner_py), "-c", script, str(src)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                            "HF_MODULES_CACHE": str(src.parent / "hf_modules")})
    assert r.returncode == 0, r.stderr[-2000:]
    remote = json.loads(r.stdout.strip().splitlines()[-1])
    m = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32, attn_implementation="eager")
    assert type(m).__name__ == "LlamaForCausalLM"
    x = torch.tensor([prompt])
    out = m.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False, eos_token_id=[2, 92542])
    new = out[0, x.shape[1]:].tolist()
    assert len(new) == 24 and not {2, 92542} & set(new)
    assert new[:6] == remote


@pytest.mark.integration  # builds a checkpoint; the xtuner env supplies the remote code
def test_without_remote_code_the_build_still_normalises(built, tmp_path, monkeypatch):
    """code="none" (a GPU machine with neither XTuner nor its wheel): no .py files and no auto_map, the same weights
    and the same normalised folder."""
    src, llama = built
    monkeypatch.setenv("CAMP_HOME", str(tmp_path))
    out = shapes.build("internlm2_5-1_8b-chat", scale="ci", code="none", show=False)
    assert not list(out.glob("*.py")) and "auto_map" not in json.loads((out / "config.json").read_text())
    assert markers.read(out)["remote_code"] is False
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    again = shapes.prepare("internlm2_5-1_8b-chat", scale="ci", code="none", show=False)
    assert json.loads((again / "config.json").read_text()) == json.loads((llama / "config.json").read_text())
