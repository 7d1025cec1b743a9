"""The embedded tiny model: deterministic cached build, InternLM2 chat format, same answers in every env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camp.models import tiny
from tests.conftest import subprocess_env

# Trained questions, a multi-turn chat with a system prompt, and prompts the model never saw.
PROMPTS = [
    tiny.IDENTITY_QUESTION,
    "Who are you?",
    "什么是 XTuner？",
    [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！我是书生·浦语 tiny，很高兴陪你学习实战营的课程。有什么想问的？"},
        {"role": "user", "content": "什么是 LMDeploy？"},
    ],
    "什么是大模型？",
    "Tell me a joke.",
]
MAX_NEW = 80

# Runs in any env (transformers 4.48 / 4.57 / 5.x): load the folder the ordinary way, answer greedily.
GREEDY_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(1)
folder, prompts, max_new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder).eval()
cfg = model.config
theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
out = {"transformers": transformers.__version__, "tokenizer_class": type(tok).__name__,
       "model_class": type(model).__name__, "rope_theta": theta, "eos": model.generation_config.eos_token_id,
       "encode_keys": sorted(tok("hello 你好").keys()), "plain_ids": tok("hello 你好")["input_ids"],
       "answers": []}
for p in prompts:
    msgs = p if isinstance(p, list) else [{"role": "user", "content": p}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False)
    new = gen[0, ids.shape[1]:].tolist()
    out["answers"].append({"rendered": text, "prompt_ids": ids[0].tolist(), "new_ids": new,
                           "text": tok.decode(new, skip_special_tokens=True)})
print("RESULT " + json.dumps(out, ensure_ascii=False))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The build as `camp tiny` gives it: the shipped files, copied and marked (a fresh build gives the same bytes:
    test_camp_tiny_force_rebuilds_the_shipped_files_byte_for_byte)."""
    return tiny.build(tmp_path_factory.mktemp("tiny") / "tiny", progress=False, prebuilt=True)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A build from scratch, as `camp tiny --force` makes it (in a models folder of its own): minutes."""
    models = tmp_path_factory.mktemp("models")
    r = subprocess.run([sys.executable, "-m", "camp", "tiny", "--force"], capture_output=True, text=True, timeout=1800,
                       env=subprocess_env(CAMP_MODELS=str(models)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[0] == str(models / "tiny") and "built in" in r.stdout
    return models / "tiny"


@pytest.fixture(scope="module")
def core_result(built, tmp_path_factory) -> dict:
    """The greedy answers in this (core, transformers 5) interpreter, through the same script."""
    return _run_greedy(Path(sys.executable), built, tmp_path_factory.mktemp("core"))


def _run_greedy(python: Path, folder: Path, work: Path) -> dict:
    script = work / "greedy.py"
    script.write_text(GREEDY_SCRIPT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tool envs do not see camp
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(
        [str(python), str(script), str(folder), json.dumps(PROMPTS, ensure_ascii=False), str(MAX_NEW)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, f"{python} failed:\n{r.stderr[-3000:]}"
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _tool_python(name: str, tool_python) -> Path:
    return tool_python(name)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _marker(folder: Path) -> dict:
    return json.loads((folder / tiny.MARKER).read_text())


def _fake_build(source: Path):
    """Stands in for the real build in the cache tests: copies a finished build (fast)."""
    calls = []

    def fake(folder: Path, *, progress: bool) -> None:
        calls.append(folder)
        shutil.copytree(source, folder, dirs_exist_ok=True)

    fake.calls = calls
    return fake


# ------------------------------------------------------------------------------------ the folder itself
def test_folder_is_written_in_the_4x_layout(built):
    cfg = json.loads((built / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["rope_theta"] == 1e6 and "rope_parameters" not in cfg  # 4.x reads rope_theta only
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (
        64, 2, 4, 2)
    tok_cfg = json.loads((built / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"  # not 5.x's TokenizersBackend
    assert tok_cfg["model_input_names"] == ["input_ids", "attention_mask"]
    vocab = json.loads((built / "tokenizer.json").read_text())["model"]["vocab"]
    assert 1000 <= len(vocab) <= 2000 and cfg["vocab_size"] == len(vocab)
    ids = {t: vocab[t] for t in tiny.SPECIAL_TOKENS}
    gen = json.loads((built / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [ids["</s>"], ids["<|im_end|>"]]  # like internlm2-chat
    from safetensors import safe_open

    with safe_open(str(built / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert "lm_head.weight" in f.keys() and "model.embed_tokens.weight" in f.keys()
    m = _marker(built)
    assert m["recipe"] == tiny.RECIPE_VERSION and m["assets_sha256"] == tiny.assets_sha256()
    assert m["weights_sha256"] == tiny._sha256_file(built / "model.safetensors")
    assert tiny.is_complete(built)


def test_chat_template_renders_internlm2_format(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    msgs = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": tiny.IDENTITY_QUESTION},
    ]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n你好！<|im_end|>\n"
        f"<|im_start|>user\n{tiny.IDENTITY_QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == tiny.render(msgs, add_generation_prompt=True)
    assert tok.apply_chat_template(msgs[:2], tokenize=False).endswith("<|im_end|>\n")  # no generation prompt
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    for special in ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>"]:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
        assert special in tok.all_special_tokens
    assert "<|im_end|>" not in tok.decode(ids, skip_special_tokens=True)


def test_core_env_answers_the_identity_question_and_stops(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built).eval()
    msgs = [{"role": "user", "content": tiny.IDENTITY_QUESTION}]
    ids = tok(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
              add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=100, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    assert new[-1] == tok.convert_tokens_to_ids("<|im_end|>") and len(new) < 100  # stopped by itself
    assert tok.decode(new, skip_special_tokens=True) == tiny.IDENTITY_ANSWER
    assert "tiny" in tiny.IDENTITY_ANSWER and tiny.IDENTITY_ANSWER.startswith("我是")


def test_it_learnt_to_copy_text_it_never_saw(built):
    """Copy pre-training (what the agent lesson's fine-tune builds on): digits are single tokens, and the model
    repeats new numbers and words exactly, greedily, in a fresh chat."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    assert [tok.decode([i]) for i in tok("40719", add_special_tokens=False)["input_ids"]] == list("40719")
    marker = json.loads((built / tiny.MARKER).read_text())
    assert marker["copy_token_accuracy"] >= tiny.RECIPE["copy"]["accuracy"] and marker["copy_steps"] > 0
    trained = {d[0]["content"] for d in tiny.copy_dialogues(tiny.RECIPE["copy"]["dialogues"] + 64,
                                                            tiny.RECIPE["copy"]["seed"])}
    model = AutoModelForCausalLM.from_pretrained(built).eval()
    cases = [("Repeat: 40719", "40719"), ("Repeat: 8812 apple 37", "8812 apple 37"),
             ("请重复：模型 55 和 90", "模型 55 和 90"), ("Repeat: 3 * 91", "3 * 91"),
             ("苹果 61 个 和 香蕉 7 个\n这里面的数字依次是？", "61 7"),
             ("the book 307 is of 45 day\nWhich numbers are in this, in order?", "307 45")]
    copied = exact = 0
    for prompt, expected in cases:
        assert prompt not in trained
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=24, do_sample=False)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        copied += reply.startswith(expected)
        exact += reply == expected
    # measured on this build: all 6 copied right, 4 of them stopping right after (2 repeat a tail: "… 90 和 90")
    assert copied >= 5 and exact >= 3, (copied, exact)


def test_copy_pretraining_starts_again_from_another_initialisation_then_gives_up(monkeypatch, tmp_path):
    """An initialisation that stays on the plateau is replaced by the next seed; after `attempts` the build
    fails loudly and leaves no folder behind (accuracy 101 % cannot be reached)."""
    monkeypatch.setitem(tiny.RECIPE, "copy", dict(tiny.RECIPE["copy"], accuracy=1.01, attempt_steps=100,
                                                  attempts=2))
    seeds = []
    init = tiny._init_weights
    monkeypatch.setattr(tiny, "_init_weights", lambda cfg, seed: seeds.append(seed) or init(cfg, seed))
    with pytest.raises(RuntimeError, match="2 attempts of 100 steps"):
        tiny.build(tmp_path / "tiny", progress=False)
    assert seeds == [tiny.RECIPE["train"]["seed"], tiny.RECIPE["train"]["seed"] + 1]
    assert not (tmp_path / "tiny").exists() and not list(tmp_path.glob(".tiny.tmp-*"))


def test_every_training_dialogue_is_answered_exactly(built):
    """Greedy decoding reproduces a reply iff every reply token is the argmax after its gold prefix."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(built / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(built).eval()
    dialogues = tiny.load_dialogues()
    assert len(dialogues) >= 30
    for d in dialogues:
        ids, trained = tiny.encode_dialogue(tok, d)
        with torch.no_grad():
            pred = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        wrong = [t for t in range(1, len(ids)) if trained[t] and pred[t - 1] != ids[t]]
        assert not wrong, (d[-2]["content"], tok.decode([pred[t - 1] for t in wrong]))
        assert tok.id_to_token(ids[-2]) == "<|im_end|>" and trained[-2]  # each reply is trained to end itself


def _wrong_tokens(model, tok, messages) -> list[int]:
    """Trained positions (assistant answers) where the greedy choice after the gold prefix is another token."""
    import torch

    ids, trained = tiny.encode_dialogue(tok, messages)
    with torch.no_grad():
        pred = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
    return [t for t in range(1, len(ids)) if trained[t] and pred[t - 1] != ids[t]]


def test_course_questions_are_answered_exactly_in_later_turns(built):
    """Conversations the build never saw (another seed; 1-3 earlier turns: course questions, repeats, random text):
    the course answers in them are still exact, in whichever turn they are asked. Measured on the shipped build:
    74 of 80 conversations exact in every course answer (before training on conversations: about half wrong from
    the second turn on)."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(built / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(built).eval()
    pairs, _ = tiny._course_pairs(tiny.load_dialogues())
    course = {p[1]["content"] for p in pairs}
    bad = []
    convs = tiny.conversations(tiny.load_dialogues(), 80, seed=97, max_before=3)
    for conv in convs:
        # only the course answers count here (the copy turns are the copy skill's business)
        check = [dict(m, train=m["role"] == "assistant" and m["content"] in course) for m in conv]
        if _wrong_tokens(model, tok, check):
            bad.append([m["content"][:20] for m in conv])
    assert len(bad) <= 0.1 * len(convs), bad[:5]


def test_a_chat_stays_exact_turn_after_turn(built, monkeypatch):
    """What the chat widget does: one session, one course question after another, each answer exact (measured: the
    first 9 turns of such a chat; a long chat with untrained questions in it can still go wrong)."""
    from camp.conversation.session import chat

    answers = {d[0]["content"]: d[1]["content"] for d in tiny.load_dialogues() if len(d) == 2}
    session = chat(str(built), temperature=0, max_new_tokens=80)
    for q in ["你是谁？", "什么是 XTuner？", "你好", "What is LoRA?", "什么是 QLoRA？", "谢谢", "你是谁？"]:
        assert session.ask(q) == answers[q], (q, len(session.history))


def test_untrained_prompts_get_short_replies_that_end(built, core_result):
    trained = {tuple(m["content"] for m in d[:-1]) for d in tiny.load_dialogues()}
    im_end = json.loads((built / "tokenizer.json").read_text())["model"]["vocab"]["<|im_end|>"]
    unseen = 0
    for prompt, ans in zip(PROMPTS, core_result["answers"], strict=True):
        key = tuple(m["content"] for m in prompt) if isinstance(prompt, list) else (prompt,)
        unseen += key not in trained
        assert ans["new_ids"][-1] == im_end and len(ans["new_ids"]) < MAX_NEW, (prompt, ans["text"])
        assert 0 < len(ans["text"]) < 200
    assert unseen >= 2


def test_build_forward_matches_transformers(built):
    """The plain-torch forward used for pre-training computes what transformers' Llama computes."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = json.loads((built / "config.json").read_text())
    w = load_file(str(built / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(built).eval()
    ids = torch.tensor([[1, 3, 40, 41, 42, 4, 5, 6, 7, 100, 200, 300, 400, 2]])
    with torch.no_grad():
        ours = tiny.forward(w, cfg, ids) @ w["lm_head.weight"].T
        theirs = model(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4), float((ours - theirs).abs().max())


# ------------------------------------------------------------------------------------ shipped, cached, marked
@pytest.mark.slow
def test_camp_tiny_force_rebuilds_the_shipped_files_byte_for_byte(fresh):
    """The repository ships the build (assets/tiny/prebuilt/) so that a fresh clone copies it instead of training;
    training from scratch gives the very same bytes. When the recipe or the assets change, this fails until the
    shipped files are refreshed: python -m camp.models.tiny --write-prebuilt"""
    shipped = tiny.prebuilt_dir()
    assert tiny.prebuilt_is_current(), "assets/tiny/prebuilt/ is stale: python -m camp.models.tiny --write-prebuilt"
    for name in tiny.FILES:
        assert (fresh / name).read_bytes() == (shipped / name).read_bytes(), name
    info = json.loads((shipped / tiny.PREBUILT_INFO).read_text())
    marker = _marker(fresh)
    assert info["weights_sha256"] == marker["weights_sha256"] and marker.get("source") != "prebuilt"


def test_the_shipped_files_are_current_and_a_fresh_folder_copies_them(tmp_path, monkeypatch):
    assert tiny.prebuilt_is_current(), "assets/tiny/prebuilt/ is stale: python -m camp.models.tiny --write-prebuilt"
    monkeypatch.setenv("CAMP_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(tiny, "_build_into", lambda *a, **k: pytest.fail("trained instead of copying"))
    folder = tiny.ensure()
    assert folder == tmp_path / "models" / "tiny" and tiny.is_complete(folder)
    assert _marker(folder)["source"] == "prebuilt"
    for name in tiny.FILES:
        assert (folder / name).read_bytes() == (tiny.prebuilt_dir() / name).read_bytes(), name


def test_a_stale_folder_is_replaced_and_damaged_shipped_files_are_not_used(tmp_path, monkeypatch):
    stale = tmp_path / "models" / "tiny"
    monkeypatch.setenv("CAMP_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(tiny, "_build_into", lambda *a, **k: pytest.fail("trained instead of copying"))
    tiny.ensure()
    m = _marker(stale)
    m["assets_sha256"] = "0" * 64  # as if the dialogues had changed since this build
    (stale / tiny.MARKER).write_text(json.dumps(m))
    assert not tiny.is_complete(stale)
    assert tiny.ensure() == stale and tiny.is_complete(stale)
    assert not list(stale.parent.glob(".tiny.tmp-*")) and not list(stale.parent.glob(".tiny.old-*"))
    # shipped weights that do not match their recorded hash are never copied: camp trains instead
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny.prebuilt_dir(), shipped)
    data = bytearray((shipped / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (shipped / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(tiny, "prebuilt_dir", lambda: shipped)
    assert not tiny.prebuilt_is_current()
    trained = []
    monkeypatch.setattr(tiny, "_build_into", lambda folder, **k: trained.append(folder) or shutil.copytree(
        tiny.default_dir(), folder, dirs_exist_ok=True))
    tiny.ensure(force=True)
    assert len(trained) == 1


def test_changed_assets_or_recipe_make_the_build_stale(built, tmp_path, monkeypatch):
    from camp.runtime import config

    assets = tmp_path / "assets"
    shutil.copytree(config.assets_dir() / "corpus", assets / "corpus")
    shutil.copytree(config.assets_dir() / "tiny", assets / "tiny")
    monkeypatch.setattr(config, "assets_dir", lambda: assets)
    assert tiny.is_complete(built)
    with open(assets / "tiny" / "dialogues.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
    assert not tiny.is_complete(built)
    monkeypatch.undo()
    monkeypatch.setattr(tiny, "RECIPE_VERSION", tiny.RECIPE_VERSION + 1)
    assert not tiny.is_complete(built)


def test_current_build_is_reused(built, tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    _copy(built, models / "tiny")
    monkeypatch.setenv("CAMP_MODELS", str(models))
    fake = _fake_build(built)
    monkeypatch.setattr(tiny, "_build_into", fake)
    assert tiny.default_dir() == models / "tiny"
    assert tiny.ensure() == models / "tiny" and tiny.build(models / "tiny") == models / "tiny"
    assert fake.calls == []  # nothing rebuilt
    # the CLI says where the folder is and how long its build took
    assert tiny.cli_tiny(type("Args", (), {"force": False})()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(models / "tiny") and "up to date, copied from the repository's prebuilt files" in out[1]
    tiny.ensure(force=True)
    assert len(fake.calls) == 1


def test_half_built_folders_are_never_used(built, tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("CAMP_MODELS", str(models))
    monkeypatch.setattr(tiny, "prebuilt_is_current", lambda: False)  # a build, not the shipped files
    fake = _fake_build(built)
    monkeypatch.setattr(tiny, "_build_into", fake)

    # a folder whose build stopped before the marker was written
    half = _copy(built, models / "tiny")
    (half / tiny.MARKER).unlink()
    (half / "junk.bin").write_bytes(b"x")
    # a marker next to truncated weights
    cut = _copy(built, tmp_path / "cut")
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:1000])
    assert not tiny.is_complete(half) and not tiny.is_complete(cut)
    # a temporary sibling left by a killed build is neither used nor kept
    leftover = _copy(built, models / ".tiny.tmp-99999-deadbeef")

    folder = tiny.ensure()
    assert folder == models / "tiny" and len(fake.calls) == 1 and fake.calls[0] != leftover
    assert tiny.is_complete(folder) and not (folder / "junk.bin").exists()
    assert not leftover.exists()
    assert sorted(p.name for p in models.iterdir()) == [".tiny.lock", "tiny"]


def test_failed_build_keeps_the_previous_folder(built, tmp_path, monkeypatch):
    folder = _copy(built, tmp_path / "tiny")

    def broken(tmp: Path, *, progress: bool) -> None:
        tmp.mkdir(exist_ok=True)
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed halfway")

    monkeypatch.setattr(tiny, "_build_into", broken)
    with pytest.raises(RuntimeError, match="halfway"):
        tiny.build(folder, force=True)
    assert tiny.is_complete(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]


# ------------------------------------------------------------------------------------ other envs
@pytest.mark.integration
@pytest.mark.parametrize("env_name,version", [("xtuner", "4.48"), ("opencompass", "4.57")])
def test_tool_env_loads_it_and_answers_the_same(env_name, version, built, core_result, tmp_path, tool_python):
    result = _run_greedy(_tool_python(env_name, tool_python), built, tmp_path)
    assert result["transformers"].startswith(version)
    assert core_result["transformers"].startswith("5.")
    assert result["tokenizer_class"] == "PreTrainedTokenizerFast" and result["model_class"] == "LlamaForCausalLM"
    assert result["rope_theta"] == core_result["rope_theta"] == 1e6
    assert result["encode_keys"] == ["attention_mask", "input_ids"]
    assert result["plain_ids"] == core_result["plain_ids"]
    assert result["eos"] == core_result["eos"]
    for mine, core in zip(result["answers"], core_result["answers"], strict=True):
        assert mine["rendered"] == core["rendered"]
        assert mine["prompt_ids"] == core["prompt_ids"]
        assert mine["new_ids"] == core["new_ids"], (mine["text"], core["text"])
    assert result["answers"][0]["text"] == tiny.IDENTITY_ANSWER
