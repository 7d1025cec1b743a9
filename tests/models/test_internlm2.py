"""InternLM2 checkpoints normalised into a plain Llama folder (issue 2, item 8).

A tiny InternLM2 checkpoint is built here from the modelling code the xtuner wheel ships (remote code, the way
real downloads come) with a sentencepiece tokenizer shaped like InternLM2's. `camp.models.internlm2.normalize()` turns
it into a LlamaForCausalLM folder; then the original (trust_remote_code, xtuner env = transformers 4.48) and the
normalised folder (natively in 4.48, the opencompass env's 4.57 and the core env's 5.x) must give the same
logits, the same greedy generations and the same token ids. The per-environment work is in internlm2_helper.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camp.runtime.errors import CampError
from tests.conftest import tool_env_python

pytestmark = pytest.mark.integration

HELPER = Path(__file__).with_name("internlm2_helper.py")
ROOT = Path(__file__).resolve().parents[2]
LENGTHS = (50, 1000)  # as in the helper: 1000 is past the 512-position dynamic-RoPE threshold
TOL_EAGER = 1e-5  # measured 0.0: same operations in the same order
TOL_SDPA = 1e-4  # measured ~8e-6 (logits up to ~6): a different attention kernel
MEASURED: dict[str, float] = {}


def env_python(name: str) -> Path:
    return tool_env_python(name)


def child_env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        HF_MODULES_CACHE=str(work / "hf_modules"),  # remote code is copied here, not into ~/.cache
        PYTHONPATH=str(ROOT),
    )
    return env


def check(proc: subprocess.CompletedProcess | subprocess.Popen, what: str, err: str = "") -> None:
    if proc.returncode:
        err = err or getattr(proc, "stderr", "") or ""
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{err[-3000:]}")


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("internlm2")


@pytest.fixture(scope="module")
def xtuner_py() -> Path:
    return env_python("xtuner")


@pytest.fixture(scope="module")
def built(work, xtuner_py) -> dict[str, Path]:
    """Tiny InternLM2 checkpoints (no bias / bias) and a Llama-style tokenizer variant, built in the xtuner env."""
    # find_spec locates the package without running xtuner/__init__ (which imports torchvision, docs/tool-notes.md)
    code = "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('xtuner').origin).parent)"
    proc = subprocess.run([str(xtuner_py), "-c", code], capture_output=True, text=True, env=child_env(work))
    check(proc, "locating xtuner in the xtuner env")
    pkg = Path(proc.stdout.strip()) / "_lite" / "modelings" / "internlm2"
    assert (pkg / "modeling_internlm2.py").is_file(), f"xtuner has no InternLM2 modelling code at {pkg}"
    out = {
        "plain": work / "tiny_internlm2",
        "bias": work / "tiny_internlm2_bias",
        "spm": work / "tiny_spm_defaults",
    }
    cmd = [str(xtuner_py), str(HELPER), "build", str(pkg), "--model", str(out["plain"])]
    cmd += ["--model", f"{out['bias']}:bias", "--tokenizer", f"{out['spm']}:llama"]
    check(
        subprocess.run(cmd, capture_output=True, text=True, env=child_env(work)), "building the checkpoints"
    )
    # the tokenizer variant gets the plain checkpoint's weights so that it is a whole model folder
    for f in out["plain"].iterdir():
        if f.name == "config.json" or f.name.startswith("model"):
            shutil.copy2(f, out["spm"] / f.name)
    return out


@pytest.fixture(scope="module")
def normalised(built, work) -> dict[str, Path]:
    # the main one in a fresh core-env process: normalising must not need transformers
    code = (
        "import sys; from camp.models.internlm2 import normalize; p = normalize(sys.argv[1]); "
        "assert 'transformers' not in sys.modules, 'normalize imported transformers'; print(p)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(built["plain"])], capture_output=True, text=True, env=child_env(work)
    )
    check(proc, "normalize() in a fresh process")
    out = {"plain": Path(proc.stdout.strip().splitlines()[-1])}
    assert out["plain"] == built["plain"].parent / "tiny_internlm2-llama"
    assert "tiny_internlm2" in proc.stdout + proc.stderr  # one progress line/bar per shard names the model
    from camp.models.internlm2 import normalize

    out["bias"] = normalize(built["bias"])
    out["spm"] = normalize(built["spm"])
    return out


@pytest.fixture(scope="module")
def results(built, normalised, work, xtuner_py) -> dict[str, dict]:
    """Run the three environments side by side; each writes logits + summary.json."""
    b, n = built, normalised
    jobs = {
        "4.48": [
            str(xtuner_py),
            "--pair",
            f"plain={b['plain']},{n['plain']}",
            "--pair",
            f"bias={b['bias']},{n['bias']}",
            "--tok",
            f"{b['plain']}={n['plain']}",
            "--tok",
            f"{b['spm']}={n['spm']}",
            "--control",
        ],
        "4.57": [str(env_python("opencompass")), "--pair", f"plain=,{n['plain']}"],
        "5.x": [sys.executable, "--pair", f"plain=,{n['plain']}"],
    }
    procs = {}
    for name, (py, *args) in jobs.items():
        if name != "4.48":
            args += ["--tok", str(n["plain"]), "--tok", str(n["spm"])]
        cmd = [py, str(HELPER), "run", str(work / f"results-{name}"), *args]
        procs[name] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(work)
        )
    out = {}
    for name, proc in procs.items():
        _stdout, stderr = proc.communicate()
        check(proc, f"the {name} run", stderr)
        out[name] = json.loads((work / f"results-{name}" / "summary.json").read_text(encoding="utf-8"))
        out[name]["dir"] = work / f"results-{name}"
    return out


def logits(res: dict, name: str, tag: str, n: int):
    import torch

    return torch.load(res["dir"] / f"{name}_{tag}_{n}.pt")


def max_diff(a, b) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


# -------------------------------------------------------------------------------------------- the folder


def test_normalised_folder_is_plain_llama(built, normalised):
    from camp.models.internlm2 import MARKER, is_internlm2

    src, dst = built["plain"], normalised["plain"]
    assert is_internlm2(src) and not is_internlm2(dst)
    assert not list(dst.glob("*.py")), "remote code must not be carried over"
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert "auto_map" not in cfg
    assert cfg["rope_scaling"] == {"type": "dynamic", "factor": 2.0} and cfg["rope_theta"] == 1e6
    assert (cfg["num_key_value_heads"], cfg["max_position_embeddings"], cfg["tie_word_embeddings"]) == (
        2,
        512,
        False,
    )
    assert cfg["attention_bias"] is False
    assert json.loads((normalised["bias"] / "config.json").read_text())["attention_bias"] is True
    # sharded like the source, with an index
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == sorted(
        p.name for p in dst.glob("model-*.safetensors")
    )
    assert len(list(dst.glob("model-*.safetensors"))) == len(list(src.glob("model-*.safetensors"))) > 1
    tok_cfg = json.loads((dst / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "auto_map" not in tok_cfg
    assert (
        tok_cfg["chat_template"] == json.loads((src / "tokenizer_config.json").read_text())["chat_template"]
    )
    assert (dst / "tokenizer.json").is_file()
    assert (dst / "generation_config.json").read_text() == (src / "generation_config.json").read_text()
    marker = json.loads((dst / MARKER).read_text())
    assert marker["source"] == str(src.resolve()) and marker["converter"] == "camp.models.internlm2"
    assert len(marker["source_config_sha256"]) == 64


# -------------------------------------------------------------------------------------------- equivalence


def test_logits_equal_original_in_448(results):
    res = results["4.48"]
    for name in ("plain", "bias"):
        for n in LENGTHS:
            orig = logits(res, name, "orig", n)
            assert orig.shape == (n, 600) and float(orig.abs().max()) > 1.0  # not a degenerate model
            eager = max_diff(orig, logits(res, name, "norm_eager", n))
            sdpa = max_diff(orig, logits(res, name, "norm", n))
            MEASURED[f"4.48 {name} {n} tokens eager/sdpa"] = (eager, sdpa)
            assert eager <= TOL_EAGER, f"{name}, {n} tokens, eager: max abs diff {eager}"
            assert sdpa <= TOL_SDPA, f"{name}, {n} tokens, sdpa: max abs diff {sdpa}"
    print("\nmax abs logit diffs:", MEASURED)


def test_long_input_exercises_dynamic_rope(results):
    """Without rope_scaling the 1000-token logits differ: the long comparison really covers dynamic NTK."""
    res = results["4.48"]
    assert max_diff(logits(res, "plain", "orig", 50), logits(res, "plain", "noscale", 50)) <= TOL_EAGER
    assert max_diff(logits(res, "plain", "orig", 1000), logits(res, "plain", "noscale", 1000)) > 1e-2


def test_greedy_generations_identical(results):
    gens = results["4.48"]["generations"]
    for name in ("plain", "bias"):
        for n in LENGTHS:
            want = gens[f"{name}_orig_{n}"]
            assert len(want) == 12
            assert gens[f"{name}_norm_{n}"] == want and gens[f"{name}_norm_eager_{n}"] == want
    for env in ("4.57", "5.x"):
        for n in LENGTHS:
            assert results[env]["generations"][f"plain_norm_{n}"] == gens[f"plain_orig_{n}"], (env, n)


@pytest.mark.parametrize("env", ["4.57", "5.x"])
def test_native_load_in_other_transformers(results, env):
    res, ref = results[env], results["4.48"]
    assert res["transformers"].startswith({"4.57": "4.", "5.x": "5."}[env]), res["transformers"]
    for n in LENGTHS:
        orig = logits(ref, "plain", "orig", n)
        eager = max_diff(orig, logits(res, "plain", "norm_eager", n))
        sdpa = max_diff(orig, logits(res, "plain", "norm", n))
        MEASURED[f"{res['transformers']} {n} tokens eager/sdpa"] = (eager, sdpa)
        assert eager <= TOL_EAGER and sdpa <= TOL_SDPA, (n, eager, sdpa)
    print(f"\nmax abs logit diffs ({env}):", MEASURED)


# -------------------------------------------------------------------------------------------- tokenizer


def texts():
    sys.path.insert(0, str(HELPER.parent))
    try:
        import internlm2_helper
    finally:
        sys.path.pop(0)
    return internlm2_helper.TEXTS


def test_tokenizer_ids_and_chat_template_match_original(results, normalised):
    ref = results["4.48"]["tokenizers"]
    for variant in ("tiny_internlm2-llama", "tiny_spm_defaults-llama"):
        orig = ref[variant]["orig"]
        for env in ("4.48", "4.57", "5.x"):
            got = results[env]["tokenizers"][variant]["norm"]
            for key in ("ids", "ids_plain", "chat", "chat_ids", "special", "bos_eos_pad"):
                assert got[key] == orig[key], f"{variant} in {env}: {key} differs"
    ids = ref["tiny_internlm2-llama"]["orig"]["ids"]
    assert all(seq[0] == 1 for seq in ids), "bos is prepended, as InternLM2Tokenizer does"
    assert any(len(set(seq)) > 10 for seq in ids)  # real tokenisation, not all-unknown
    chat = ref["tiny_internlm2-llama"]["orig"]["chat"]
    assert chat.startswith("<s><|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")


def test_tokenizer_decode_round_trips(results):
    sample = texts()
    for env in ("4.48", "4.57", "5.x"):
        tok = results[env]["tokenizers"]["tiny_internlm2-llama"]["norm"]
        # InternLM2's tokenizer keeps text as is (no NFKC, no dummy prefix): decode gives back the text,
        # special tokens, whitespace runs and byte-fallback characters included
        assert tok["decode"] == sample, env
        assert tok["decode_skip"][:3] == sample[:3], env
    ref = results["4.48"]["tokenizers"]
    assert ref["tiny_internlm2-llama"]["sp_decode"] == sample
    # sentencepiece defaults (NFKC, collapsed whitespace): decode equals sentencepiece's own decode
    spm = ref["tiny_spm_defaults-llama"]
    for i, text in enumerate(sample):
        if "<" not in text:
            assert spm["norm"]["decode"][i] == spm["sp_decode"][i], text


# -------------------------------------------------------------------------------------------- normalize()


def test_rerun_is_instant_and_force_converts_again(built, normalised):
    from camp.models.internlm2 import MARKER, normalize

    dst = normalised["plain"]
    before = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    assert normalize(built["plain"]) == dst
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == before, (
        "a complete folder is not rewritten"
    )
    created = json.loads((dst / MARKER).read_text())
    assert normalize(built["plain"], force=True) == dst
    assert (dst / MARKER).stat().st_mtime_ns != before[MARKER]
    assert json.loads((dst / MARKER).read_text())["source_config_sha256"] == created["source_config_sha256"]


def test_not_internlm2(tmp_path, normalised):
    from camp.models.internlm2 import is_internlm2, normalize

    assert not is_internlm2(tmp_path)
    with pytest.raises(CampError, match="not an InternLM2"):
        normalize(normalised["plain"], tmp_path / "out")  # a Llama folder
    with pytest.raises(CampError, match="config.json"):
        normalize(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_weights(tmp_path, built):
    from camp.models.internlm2 import normalize

    src = tmp_path / "ckpt"
    src.mkdir()
    for f in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copy2(built["plain"] / f, src / f)
    with pytest.raises(CampError, match="no weights"):
        normalize(src, tmp_path / "out")
    # an index whose second shard never arrived
    shutil.copy2(built["plain"] / "model.safetensors.index.json", src)
    shutil.copy2(built["plain"] / "model-00001-of-00002.safetensors", src)
    with pytest.raises(CampError, match="model-00002-of-00002.safetensors"):
        normalize(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inconsistent_shapes(tmp_path, built):
    from camp.models.internlm2 import normalize

    src = tmp_path / "ckpt"
    shutil.copytree(built["plain"], src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["num_key_value_heads"] = 1  # wqkv on disk has 2 kv heads
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CampError, match=r"model-0000\d-of-00002\.safetensors.*wqkv.*shape"):
        normalize(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.camp-*"))


def test_crash_midway_leaves_nothing_marked_complete(tmp_path, built, monkeypatch):
    import camp.models.internlm2 as m

    dst = tmp_path / "out"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # after the weight shards were written

    monkeypatch.setattr(m, "_tokenizer_files", boom)
    with pytest.raises(KeyboardInterrupt):
        m.normalize(built["plain"], dst)
    assert not dst.exists() and not list(tmp_path.glob(".out.camp-*"))

    # a hard kill (no cleanup runs): the half-written temp folder is never taken for the result
    code = (
        "import os, sys, camp.models.internlm2 as m; m._tokenizer_files = lambda *a, **k: os._exit(9); "
        "m.normalize(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(built["plain"]), str(dst)], env=child_env(tmp_path)
    )
    assert proc.returncode == 9
    leftovers = list(tmp_path.glob(".out.camp-tmp-*"))
    assert not dst.exists() and leftovers and not (leftovers[0] / m.MARKER).exists()
    monkeypatch.undo()
    assert m.normalize(built["plain"], dst) == dst and (dst / m.MARKER).is_file()
    assert not list(tmp_path.glob(".out.camp-*")), "stale temp folders of dead conversions are removed"


def test_existing_foreign_folder_is_not_overwritten(tmp_path, built):
    from camp.models.internlm2 import normalize

    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep")
    with pytest.raises(CampError, match="not a camp conversion"):
        normalize(built["plain"], dst)
    assert (dst / "notes.txt").read_text() == "keep"


def test_bin_shards_keep_dtype(tmp_path, built, normalised):
    """pytorch_model-*.bin shards in bf16 → safetensors in bf16 with the same values."""
    import torch
    from safetensors.torch import load_file

    from camp.models.internlm2 import normalize

    src = tmp_path / "bin_ckpt"
    src.mkdir()
    cfg = json.loads((built["plain"] / "config.json").read_text())
    cfg["torch_dtype"] = "bfloat16"
    (src / "config.json").write_text(json.dumps(cfg))
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy2(built["plain"] / f, src / f)
    weight_map = {}
    shards = sorted(built["plain"].glob("model-*.safetensors"))
    for i, shard in enumerate(shards, 1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        tensors = {k: v.to(torch.bfloat16) for k, v in load_file(shard).items()}
        torch.save(tensors, src / name)
        weight_map.update(dict.fromkeys(tensors, name))
    (src / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))

    dst = normalize(src)
    assert dst == tmp_path / "bin_ckpt-llama"
    assert json.loads((dst / "config.json").read_text())["torch_dtype"] == "bfloat16"
    got, want = {}, {}
    for f in dst.glob("model-*.safetensors"):
        got.update(load_file(f))
    for f in normalised["plain"].glob("model-*.safetensors"):
        want.update(load_file(f))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == torch.bfloat16 and torch.equal(got[k], want[k].to(torch.bfloat16)), k


def test_default_destination(tmp_path, monkeypatch):
    import camp.models.internlm2 as m

    src = tmp_path / "shared" / "internlm2-chat-1_8b"
    src.mkdir(parents=True)
    assert m.default_destination(src) == tmp_path / "shared" / "internlm2-chat-1_8b-llama"
    # a read-only shared folder (InternStudio's /root/share/new_models): convert into camp's models folder
    monkeypatch.setenv("CAMP_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(m.os, "access", lambda path, mode: False)
    assert m.default_destination(src) == tmp_path / "models" / "internlm2-chat-1_8b-llama"


def test_import_is_cheap():
    code = (
        "import sys, camp.models.internlm2; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
