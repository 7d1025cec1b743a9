"""The embedded tiny model: an InternLM-style chat model built locally, offline, in a minute or two.

Every test and every notebook on the `cpu-tiny` profile uses it, so it must exist on a machine with no
model hub. It is a plain `LlamaForCausalLM` (the layout camp normalises real InternLM2 checkpoints to)
with InternLM2's chat template and special tokens, a byte-level BPE tokenizer trained on the course text
in `assets/corpus/`, and weights pre-trained on the dialogues in `assets/tiny/dialogues.jsonl` until it
answers each of them greedily and exactly, ending with `<|im_end|>`.

The folder is written by hand (not by `save_pretrained`): a folder saved by transformers 5 silently
breaks in the 4.x environments (xtuner 4.48, opencompass 4.57). Builds are deterministic on one machine,
atomic (camp.runtime.markers: temporary sibling folder, marker, then rename). The repository ships the result
(assets/tiny/prebuilt/): `camp tiny` copies it when it matches the recipe and assets, `camp tiny --force` trains.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from camp.runtime import config, markers
from camp.runtime import progress as _progress
from camp.runtime.errors import CampError
from camp.runtime.markers import sha256_file as _sha256_file

NAME = "tiny"
# Bump when the build changes in a way the recipe dict below does not show (e.g. the training loop).
RECIPE_VERSION = 3
MARKER = markers.MARKER

IDENTITY_QUESTION = "你是谁？"
IDENTITY_ANSWER = "我是书生·浦语 tiny，一个一两分钟就能在本机训练出来的迷你对话模型，用来演示实战营的课程工具。"

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# InternLM2's agent tokens, kept so the agent lessons can use the same protocol on the tiny model.
AGENT_TOKENS = ["<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>"]
SPECIAL_TOKENS = [UNK, BOS, EOS, IM_START, IM_END, *AGENT_TOKENS]  # ids 0..8, in this order

# InternLM2-chat's own template (bos first, ChatML-like turns, no default system prompt).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

RECIPE = {
    "version": RECIPE_VERSION,
    # Digits are always single tokens (like LLaMA's and InternLM2's tokenizers): a number is spelled the same
    # way wherever it appears, so copying it is copying digit by digit.
    "tokenizer": {"vocab_size": 2000, "min_frequency": 2, "split_digits": True},
    "model": {
        "hidden_size": 64,
        "intermediate_size": 192,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-5,
    },
    # Train until every assistant token of every dialogue is the greedy choice by `margin` logits, so
    # the greedy answers survive the small numeric differences between transformers versions.
    "train": {"seed": 1234, "lr": 4e-3, "batches": 4, "max_epochs": 400, "margin": 2.0},
    # Copy pre-training: generated "repeat this" dialogues teach the model to copy
    # text and numbers from its context (what real base models learn from web text). Without it a model
    # this small needs ~10k agent traces before it copies a tool's result; with it the agent lesson's
    # fine-tune only has to teach the ReAct format. Trained first, then mixed into every later update.
    # The skill appears suddenly (after ~1800-2500 steps here, depending on the initialisation and data order),
    # so the phase runs until held-out repeats are right token by token at `accuracy`, checked every 100 steps.
    # Then `mixed_steps` more on repeats mixed with "which numbers are in this text" (a share `numbers`): picking
    # numbers out of a sentence is what an agent does when it fills in a tool call.
    "copy": {"seed": 4321, "dialogues": 6000, "held_out": 64, "batch": 32, "lr": 3e-3, "accuracy": 0.95,
             "attempt_steps": 4000, "attempts": 3, "numbers": 0.5, "mixed_steps": 800},
    # Conversations: every course question again after 1 to `max_before` earlier turns (other course questions,
    # repeat-this requests, or "noise" turns — random text the model is not trained to say, standing in for
    # whatever an untrained question made it answer), so the answer is exact in any turn of a chat, not only in
    # the first. First `stream_steps` batches of fresh conversations (up to `stream_max_before` earlier turns, none
    # seen twice: the model must learn to answer the last question whatever came before, not memorise contexts),
    # then `dialogues` fixed ones trained with the course dialogues to the same margin.
    "turns": {"seed": 2718, "dialogues": 240, "max_before": 4, "noise": 0.3, "copy": 0.2, "system": 0.2,
              "batch": 16, "stream_steps": 600, "stream_max_before": 6},
}


def default_dir() -> Path:
    return config.models_dir() / NAME


# ---------------------------------------------------------------------------------------------- assets


def asset_files() -> list[Path]:
    """The course files the build reads: corpus for the tokenizer, dialogues for the weights."""
    try:
        root = config.assets_dir()
    except RuntimeError as exc:  # camp installed without its course kit
        raise CampError(f"cannot build the tiny model: {exc}") from None
    files = sorted((root / "corpus").glob("*.md")) + [root / "tiny" / "dialogues.jsonl"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or len(files) < 2:
        raise CampError(
            f"tiny model assets missing ({', '.join(missing) or 'assets/corpus/*.md'}) — "
            "run camp from a complete checkout of the course kit"
        )
    return files


def assets_sha256() -> str:
    h = hashlib.sha256()
    root = config.assets_dir()
    for f in asset_files():
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def recipe_sha256() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()


def load_dialogues() -> list[list[dict]]:
    rows = []
    path = config.assets_dir() / "tiny" / "dialogues.jsonl"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            msgs = json.loads(line)["messages"]
            if not msgs or msgs[-1]["role"] != "assistant":
                raise CampError(f"{path}:{n}: a dialogue must end with an assistant message")
            rows.append(msgs)
    return rows


_WORDS_ZH = ["模型", "课程", "学员", "书生", "浦语", "数据", "训练", "评测", "部署", "工具", "苹果", "香蕉", "老师",
             "作业", "计算", "结果", "今天", "明天", "书", "笔", "个", "本", "和", "加", "减", "乘以", "是"]
_WORDS_EN = ["model", "course", "data", "tool", "train", "test", "apple", "book", "the", "and", "is", "of",
             "plus", "minus", "times", "result", "answer", "camp", "student", "day"]
_SYMBOLS = ["+", "-", "*", "=", "×", ",", ".", ":", "(", ")"]


def copy_dialogues(n: int, seed: int, *, numbers: float = 0.0) -> list[list[dict]]:
    """n generated copy dialogues (deterministic for a seed), in Chinese and English, over a mix of numbers
    (1 to 5 digits), words and symbols: "repeat this" (the answer repeats the text exactly) and, for a share
    `numbers` of them, "which numbers are in this text" (the answer lists them in order)."""
    import random

    rng = random.Random(seed)
    out = []
    while len(out) < n:
        zh = rng.random() < 0.5
        if numbers and rng.random() < numbers:
            items, found = [], []
            for _ in range(rng.randint(2, 10)):
                if rng.random() < 0.3:
                    found.append(str(rng.randint(0, 10 ** rng.randint(1, 4) - 1)))
                    items.append(found[-1])
                else:
                    items.append(rng.choice(_WORDS_ZH if zh else _WORDS_EN))
            if found:
                text = " ".join(items)
                ask = "\n这里面的数字依次是？" if zh else "\nWhich numbers are in this, in order?"
                out.append([{"role": "user", "content": text + ask}, {"role": "assistant", "content": " ".join(found)}])
            continue
        items = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.45:
                items.append(str(rng.randint(0, 10 ** rng.randint(1, 5) - 1)))
            elif r < 0.85:
                items.append(rng.choice(_WORDS_ZH if zh else _WORDS_EN))
            else:
                items.append(rng.choice(_SYMBOLS))
        text = ("" if zh and rng.random() < 0.3 else " ").join(items)
        ask = rng.choice(["请重复：", "原样写出：", "复述："] if zh else ["Repeat: ", "Say exactly: ", "Copy: "])
        out.append([{"role": "user", "content": ask + text}, {"role": "assistant", "content": text}])
    return out


def _course_pairs(dialogues: list[list[dict]]) -> tuple[list[list[dict]], list[str]]:
    """The single-turn question/answer pairs of the course dialogues, and their system prompts."""
    pairs, systems = [], []
    for d in dialogues:
        turns = [m for m in d if m["role"] != "system"]
        systems += [m["content"] for m in d if m["role"] == "system" and m["content"] not in systems]
        if len(turns) == 2:
            pairs.append(turns)
    return pairs, systems


def _noise_text(rng, zh: bool) -> str:
    words = _WORDS_ZH if zh else _WORDS_EN
    pieces = [rng.choice(words) if rng.random() < 0.8 else str(rng.randint(0, 999)) for _ in range(rng.randint(1, 9))]
    return ("" if zh and rng.random() < 0.5 else " ").join(pieces)


def conversations(dialogues: list[list[dict]], n: int, seed: int, *, max_before: int | None = None) -> list[list[dict]]:
    """n generated conversations (deterministic for a seed): a course question with its answer after 1 to
    `max_before` earlier turns, each a course question, a repeat-this request or a noise turn (random user text and
    random assistant text). Only the course answers are trained: the other assistant turns are marked
    `"train": False` (context). The final questions cycle through every course pair."""
    import random

    cfg = RECIPE["turns"]
    max_before = max_before or cfg["max_before"]
    rng = random.Random(seed)
    pairs, systems = _course_pairs(dialogues)
    copies = copy_dialogues(n * max_before, seed + 1)
    finals = []
    out = []
    while len(out) < n:
        if not finals:
            finals = list(range(len(pairs)))
            rng.shuffle(finals)
        conv = [{"role": "system", "content": rng.choice(systems)}] if systems and rng.random() < cfg["system"] else []
        for _ in range(rng.randint(1, max_before)):
            r = rng.random()
            if r < cfg["noise"]:
                zh = rng.random() < 0.5
                conv += [{"role": "user", "content": _noise_text(rng, zh)},
                         {"role": "assistant", "content": _noise_text(rng, zh), "train": False}]
            elif r < cfg["noise"] + cfg["copy"]:  # context only: copying is the copy phases' skill, not an answer
                q, a = copies[rng.randrange(len(copies))]
                conv += [q, dict(a, train=False)]
            else:
                conv += pairs[rng.randrange(len(pairs))]
        conv += pairs[finals.pop()]
        out.append([dict(m) for m in conv])
    return out


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """CHAT_TEMPLATE in Python (the tests check both agree)."""
    text = BOS + "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


# ---------------------------------------------------------------------------------------------- marker


FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def read_marker(path: Path) -> dict | None:
    return markers.read(path)


def _current(marker: dict | None, path: Path) -> bool:
    """True when `marker` records a build of the current recipe and assets, with these very weights."""
    if not marker or marker.get("recipe") != RECIPE_VERSION or marker.get("recipe_sha256") != recipe_sha256():
        return False
    try:
        if marker.get("assets_sha256") != assets_sha256():
            return False
    except CampError:
        pass  # no course assets here (installed package): a verified build is still usable
    return (path / "model.safetensors").is_file() and \
        marker.get("weights_sha256") == _sha256_file(path / "model.safetensors")


def is_complete(path: Path) -> bool:
    """True when `path` is a finished build of the current recipe and assets (weights checked by hash)."""
    path = Path(path)
    if not markers.is_complete(path, NAME) or not all((path / f).is_file() for f in FILES):
        return False
    return _current(markers.read(path), path)


# ---------------------------------------------------------------------------------------------- prebuilt
# The repository ships the build's files (assets/tiny/prebuilt/, ~1.6 MB): a fresh clone copies them in a second
# instead of training for minutes. They are used only when they record the current recipe and assets and their
# weights match their hash; `camp tiny --force` trains anew and gives the same bytes (the tests check it), and
# `python -m camp.models.tiny --write-prebuilt` refreshes them after the recipe or the assets change.
PREBUILT_INFO = "build.json"


def prebuilt_dir() -> Path | None:
    try:
        return config.assets_dir() / "tiny" / "prebuilt"
    except RuntimeError:
        return None


def prebuilt_is_current() -> bool:
    folder = prebuilt_dir()
    if folder is None or not all((folder / f).is_file() for f in FILES):
        return False
    return _current(markers.read_json(folder / PREBUILT_INFO), folder)


def write_prebuilt(source: Path | None = None) -> Path:
    """Copy a finished build (default: the cached one, built first if needed) into assets/tiny/prebuilt/."""
    source = Path(source) if source is not None else ensure()
    folder = prebuilt_dir()
    if folder is None or not is_complete(source):
        raise CampError(f"nothing to ship: {source} is not a current tiny build, or there is no assets folder")
    folder.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(source / f, folder / f)
    # what the build was, not how long it took on one machine
    skip = ("camp_marker", "kind", "time", "files", "build_seconds", "source", "copy_seconds")
    info = {k: v for k, v in markers.read(source).items() if k not in skip}
    markers.write_json(folder / PREBUILT_INFO, info)
    return folder


# ---------------------------------------------------------------------------------------------- build


def _lock(out: Path):
    """One builder per folder at a time (parallel notebooks / test workers); others wait, then reuse."""
    return config.file_lock(out.parent / f".{out.name}.lock")


def ensure(force: bool = False) -> Path:
    """The cached tiny model folder: copied from the repository's prebuilt files when they are current (a second),
    otherwise built (a few minutes). force=True trains it anew."""
    return build(default_dir(), force=force, progress=True, prebuilt=not force)


def build(out: Path | None = None, *, force: bool = False, progress: bool = True, prebuilt: bool = False) -> Path:
    """Build the tiny model into `out` (default: default_dir()) unless a current build is already there.
    prebuilt=True copies the repository's prebuilt files when they are current instead of training."""
    out = Path(out) if out is not None else default_dir()
    out = out.expanduser().absolute()
    if not force and is_complete(out):
        return out
    with _lock(out):
        if not force and is_complete(out):  # another process built it while we waited
            return out
        # replace=True: whatever is at `out` now is stale, half-written or asked to be rebuilt
        with markers.building(out, replace=True) as tmp:
            if prebuilt and prebuilt_is_current():
                _copy_prebuilt(tmp, progress=progress)
            else:
                _build_into(tmp, progress=progress)
    return out


def _copy_prebuilt(folder: Path, *, progress: bool) -> None:
    t0 = time.perf_counter()
    src = prebuilt_dir()
    for f in FILES:
        shutil.copyfile(src / f, folder / f)
    info = markers.read_json(src / PREBUILT_INFO)
    if info.get("weights_sha256") != _sha256_file(folder / "model.safetensors"):
        raise CampError(f"{src}: the copied weights do not match their hash — run `camp tiny --force` to train them")
    seconds = round(time.perf_counter() - t0, 3)
    markers.mark(folder, NAME, **{**info, "source": "prebuilt", "copy_seconds": seconds})
    _say(progress, f"copied the shipped build from {src} in {seconds:.1f} s (camp tiny --force trains it anew)")


def _say(progress: bool, msg: str) -> None:
    if progress:
        _progress.current().say(f"tiny: {msg}")


def _build_into(folder: Path, *, progress: bool) -> None:
    t0 = time.perf_counter()
    try:
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise CampError(
            f"building the tiny model needs torch, tokenizers and safetensors ({exc}) — "
            "run camp from the core environment (`make course` creates it)"
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    assets = assets_sha256()
    dialogues = load_dialogues()
    tok = _train_tokenizer(dialogues)
    (folder / "tokenizer.json").write_text(tok.to_str(pretty=True), encoding="utf-8")
    _say(progress, f"tokenizer trained: {tok.get_vocab_size()} tokens")

    cfg = _model_config(tok.get_vocab_size())
    tensors, stats = _train_model(cfg, tok, dialogues, progress=progress)
    _write_json(folder / "config.json", cfg)
    _write_json(folder / "generation_config.json", _generation_config(tok))
    tok_cfg, special_map = _tokenizer_files(tok)
    _write_json(folder / "tokenizer_config.json", tok_cfg)
    _write_json(folder / "special_tokens_map.json", special_map)

    from safetensors.torch import save_file

    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    seconds = round(time.perf_counter() - t0, 2)
    import safetensors
    import tokenizers
    import torch

    marker = {
        "recipe": RECIPE_VERSION,
        "recipe_sha256": recipe_sha256(),
        "assets_sha256": assets,
        "weights_sha256": _sha256_file(folder / "model.safetensors"),
        "tokenizer_sha256": _sha256_file(folder / "tokenizer.json"),
        "vocab_size": tok.get_vocab_size(),
        "parameters": stats["parameters"],
        "train_epochs": stats["epochs"],
        "min_margin": stats["margin"],
        "copy_steps": stats["copy_steps"],
        "copy_token_accuracy": stats["copy_token_accuracy"],
        "build_seconds": seconds,
        "built_with": {
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
        },
    }
    markers.mark(folder, NAME, **marker)  # last: its presence means the folder is whole
    _say(progress, f"built in {seconds:.1f} s")


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _train_tokenizer(dialogues: list[list[dict]]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    texts = [f.read_text(encoding="utf-8") for f in asset_files() if f.suffix == ".md"]
    texts += [m["content"] for d in dialogues for m in d]
    # Role names open every turn (after <|im_start|>, no leading space): make each one token.
    texts += ["system\nuser\nassistant\nenvironment\n"] * 8
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if RECIPE["tokenizer"]["split_digits"]:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["tokenizer"]["vocab_size"],
        min_frequency=RECIPE["tokenizer"]["min_frequency"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Like InternLM2's tokenizer: plain text gets <s> in front (chat templates add it themselves).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def _model_config(vocab_size: int) -> dict:
    m = RECIPE["model"]
    # transformers 4.x layout (rope_theta, not 5.x's rope_parameters): 4.48, 4.57 and 5.x all read it.
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": m["hidden_size"],
        "intermediate_size": m["intermediate_size"],
        "num_hidden_layers": m["num_hidden_layers"],
        "num_attention_heads": m["num_attention_heads"],
        "num_key_value_heads": m["num_key_value_heads"],
        "head_dim": m["hidden_size"] // m["num_attention_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": m["max_position_embeddings"],
        "initializer_range": 0.02,
        "rms_norm_eps": m["rms_norm_eps"],
        "rope_theta": m["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "pad_token_id": SPECIAL_TOKENS.index(EOS),
        "torch_dtype": "float32",
    }


def _generation_config(tok) -> dict:
    # Like internlm2-chat: stop at </s> or <|im_end|>, so a chat reply ends by itself.
    return {
        "bos_token_id": tok.token_to_id(BOS),
        "eos_token_id": [tok.token_to_id(EOS), tok.token_to_id(IM_END)],
        "pad_token_id": tok.token_to_id(EOS),
    }


def _tokenizer_files(tok) -> tuple[dict, dict]:
    extra = [IM_START, IM_END, *AGENT_TOKENS]
    special_map = {
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": EOS,
        "additional_special_tokens": extra,
    }
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": RECIPE["model"]["max_position_embeddings"],
        "model_input_names": ["input_ids", "attention_mask"],
    }
    return tok_cfg, special_map


def encode_dialogue(tok, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of a rendered dialogue and, per id, whether it is trained (assistant text + <|im_end|>; not an
    assistant message marked `"train": False`)."""
    ids: list[int] = [tok.token_to_id(BOS)]
    mask: list[bool] = [False]

    def add(text: str, trained: bool) -> None:
        piece = tok.encode(text, add_special_tokens=False).ids
        ids.extend(piece)
        mask.extend([trained] * len(piece))

    for m in messages:
        add(f"{IM_START}{m['role']}\n", False)
        if m["role"] == "assistant":
            add(m["content"] + IM_END, m.get("train", True))
        else:
            add(m["content"] + IM_END, False)
        add("\n", False)
    return ids, mask


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and, on 2 cores, faster for a model this small
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_weights(cfg: dict, seed: int) -> dict:
    """Fresh weights under transformers' Llama names, initialised like transformers does (N(0, 0.02))."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    hid, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, nkv, std = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["initializer_range"]

    def normal(*shape):
        return torch.randn(*shape, generator=gen) * std

    w = {"model.embed_tokens.weight": normal(cfg["vocab_size"], hid)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = torch.ones(hid)
        w[p + "self_attn.q_proj.weight"] = normal(nh * hd, hid)
        w[p + "self_attn.k_proj.weight"] = normal(nkv * hd, hid)
        w[p + "self_attn.v_proj.weight"] = normal(nkv * hd, hid)
        w[p + "self_attn.o_proj.weight"] = normal(hid, nh * hd)
        w[p + "post_attention_layernorm.weight"] = torch.ones(hid)
        w[p + "mlp.gate_proj.weight"] = normal(inter, hid)
        w[p + "mlp.up_proj.weight"] = normal(inter, hid)
        w[p + "mlp.down_proj.weight"] = normal(hid, inter)
    w["model.norm.weight"] = torch.ones(hid)
    w["lm_head.weight"] = normal(cfg["vocab_size"], hid)
    return {k: v.requires_grad_() for k, v in w.items()}


def forward(w: dict, cfg: dict, input_ids):
    """Final hidden states of transformers' LlamaModel, in plain torch (no transformers import: the
    build stays fast and its numbers do not depend on the transformers version). The tests check that
    transformers' LlamaForCausalLM gives the same logits for the written folder."""
    import torch
    import torch.nn.functional as F

    bsz, length = input_ids.shape
    hid, hd, eps = cfg["hidden_size"], cfg["head_dim"], cfg["rms_norm_eps"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.arange(length).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((length, length), float("-inf")).triu(1)

    x = F.embedding(input_ids, w["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(bsz, length, nh, hd).transpose(1, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(bsz, length, nkv, hd).transpose(1, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(bsz, length, nkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        att = ((q @ k.transpose(-1, -2)) * hd**-0.5 + causal).softmax(-1) @ v
        x = x + att.transpose(1, 2).reshape(bsz, length, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = F.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + gate @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]).reshape(bsz, length, hid)


def _batches(tok, dialogues: list[list[dict]], pad_id: int, n: int | None = None):
    """Dialogues sorted by length into n right-padded batches (default: RECIPE's; less padding than one)."""
    import torch

    seqs = []
    for d in dialogues:
        ids, mask = encode_dialogue(tok, d)
        if ids != tok.encode(render(d), add_special_tokens=False).ids:
            # pieces must tokenise like the whole rendered chat, or inference would see other tokens
            raise RuntimeError(f"tiny: dialogue tokenises differently in pieces: {d[0]['content']!r}")
        seqs.append((ids, mask))
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i][0]), i))
    n = n or RECIPE["train"]["batches"]
    size = -(-len(order) // n)
    out = []
    for b in range(0, len(order), size):
        group = [seqs[i] for i in order[b : b + size]]
        length = max(len(ids) for ids, _ in group)
        input_ids = torch.full((len(group), length), pad_id, dtype=torch.long)
        trained = torch.zeros((len(group), length), dtype=torch.bool)
        for j, (ids, mask) in enumerate(group):
            input_ids[j, : len(ids)] = torch.tensor(ids)
            trained[j, : len(mask)] = torch.tensor(mask)
        # Position t predicts token t+1: logits only where t+1 is a trained token. Right padding under
        # causal attention never influences the real tokens.
        where = trained[:, 1:].reshape(-1).nonzero().squeeze(1)
        out.append((input_ids[:, :-1], where, input_ids[:, 1:].reshape(-1)[where]))
    return out


def _loss_and_margin(w, cfg, batch):
    import torch
    import torch.nn.functional as F

    inputs, where, targets = batch
    hidden = forward(w, cfg, inputs)
    logits = hidden.reshape(-1, cfg["hidden_size"])[where] @ w["lm_head.weight"].T
    with torch.no_grad():
        right = logits.gather(1, targets[:, None]).squeeze(1)
        best_other = logits.scatter(1, targets[:, None], float("-inf")).max(1).values
        margin = float((right - best_other).min())
        accuracy = float((right > best_other).float().mean())
    return F.cross_entropy(logits, targets), margin, accuracy


def _train_model(cfg: dict, tok, dialogues: list[list[dict]], *, progress: bool):
    with _one_thread():
        state = _copy_phases(cfg, tok, progress=progress)
        return _answer_phase(cfg, tok, dialogues, state, progress=progress)


def _copy_phases(cfg: dict, tok, *, progress: bool) -> dict:
    """Copy pre-training, then repeats mixed with picking out numbers. Returns the weights and where the stream of
    copy batches stands (the last phase keeps drawing from it)."""
    import torch

    rec, cp = RECIPE["train"], RECIPE["copy"]
    copies = copy_dialogues(cp["dialogues"] + cp["held_out"], cp["seed"])
    held_out = _batches(tok, copies[: cp["held_out"]], cfg["pad_token_id"], n=1)[0]
    copy_batches = _batches(tok, copies[cp["held_out"] :], cfg["pad_token_id"], n=cp["dialogues"] // cp["batch"])
    order = torch.randperm(len(copy_batches), generator=torch.Generator().manual_seed(cp["seed"])).tolist()
    step, w = 0, {}

    def next_copy_batch():
        nonlocal step
        step += 1
        return copy_batches[order[step % len(order)]]

    def copy_accuracy() -> float:
        with torch.no_grad():
            return _loss_and_margin(w, cfg, held_out)[2]

    accuracy, total_steps = 0.0, 0
    for attempt in range(cp["attempts"]):
        # Some initialisations sit on the plateau before the skill for many thousand steps: after
        # `attempt_steps`, start again from the next seed rather than wait (the build stays deterministic).
        w = _init_weights(cfg, rec["seed"] + attempt)
        n_params = sum(t.numel() for t in w.values())
        if attempt == 0:
            _say(progress, f"copy pre-training {n_params:,} parameters on {cp['dialogues']} generated "
                           f"repeat-this dialogues until {cp['accuracy']:.0%} of held-out copy tokens are right")
        opt = torch.optim.AdamW(list(w.values()), lr=cp["lr"], betas=(0.9, 0.98), weight_decay=0.0)
        step, accuracy = 0, 0.0
        while accuracy < cp["accuracy"] and step < cp["attempt_steps"]:
            loss = _loss_and_margin(w, cfg, next_copy_batch())[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 100 == 0:
                accuracy = copy_accuracy()
                if step % 500 == 0:
                    _say(progress, f"copy step {step}: held-out copy token accuracy {accuracy:.1%}")
        total_steps += step
        if accuracy >= cp["accuracy"]:
            break
        _say(progress, f"copying not learnt in {step} steps from this initialisation ({accuracy:.1%}): "
                       "starting again from another")
    else:
        raise RuntimeError(f"tiny: copy pre-training did not reach {cp['accuracy']:.0%} in {cp['attempts']} "
                           f"attempts of {cp['attempt_steps']} steps ({accuracy:.1%})")
    copy_steps = total_steps
    _say(progress, f"copying learnt after {copy_steps} steps ({accuracy:.1%})")
    copy_batches = _mixed_copy_batches(cfg, tok)
    for _ in range(cp["mixed_steps"]):
        loss, _, acc = _loss_and_margin(w, cfg, next_copy_batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _say(progress, f"{cp['mixed_steps']} steps on repeats mixed with picking out numbers: last batch "
                   f"token accuracy {acc:.1%}")
    return {"w": w, "step": step, "order": order, "copy_batches": copy_batches, "held_out": held_out,
            "parameters": n_params, "copy_steps": copy_steps}


def _mixed_copy_batches(cfg: dict, tok) -> list:
    cp = RECIPE["copy"]
    mixed = copy_dialogues(cp["dialogues"], cp["seed"] + 1, numbers=cp["numbers"])
    return _batches(tok, mixed, cfg["pad_token_id"], n=cp["dialogues"] // cp["batch"])


def _answer_phase(cfg: dict, tok, dialogues: list[list[dict]], state: dict, *, progress: bool):
    """The course answers, alone and inside conversations, until each is the greedy choice by the margin."""
    import torch

    rec, tu = RECIPE["train"], RECIPE["turns"]
    w, order, copy_batches = state["w"], state["order"], state["copy_batches"]
    step = state["step"]

    def next_copy_batch():
        nonlocal step
        step += 1
        return copy_batches[order[step % len(order)]]

    batches = _batches(tok, dialogues, cfg["pad_token_id"])
    batches += _batches(tok, conversations(dialogues, tu["dialogues"], tu["seed"]), cfg["pad_token_id"],
                        n=tu["dialogues"] // tu["batch"])
    n_targets = sum(len(t) for _, _, t in batches)
    _say(progress, f"pre-training on {len(dialogues)} dialogues and {tu['dialogues']} conversations "
                   f"({n_targets} answer tokens)")
    opt = torch.optim.AdamW(list(w.values()), lr=rec["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    for i in range(tu["stream_steps"]):
        fresh = conversations(dialogues, tu["batch"], tu["seed"] + 1 + i, max_before=tu["stream_max_before"])
        loss = _loss_and_margin(w, cfg, _batches(tok, fresh, cfg["pad_token_id"], n=1)[0])[0]
        loss = loss + _loss_and_margin(w, cfg, next_copy_batch())[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % 200 == 0:
            _say(progress, f"{i + 1} batches of fresh conversations: loss {loss.item():.3f}")
    # A batch is updated only while some answer token in it is not yet the greedy choice by `margin`;
    # each update also takes a copy batch, so the copying skill stays. An epoch with no update means
    # every batch passed with the final weights: those are saved.
    for epoch in range(rec["max_epochs"] + 1):
        updated, margins = False, []
        for batch in batches:
            loss, margin, _ = _loss_and_margin(w, cfg, batch)
            margins.append(margin)
            if margin >= rec["margin"]:
                continue
            loss = loss + _loss_and_margin(w, cfg, next_copy_batch())[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            updated = True
        if not updated:
            break
        if epoch == rec["max_epochs"]:
            raise RuntimeError(f"tiny: pre-training did not converge (margin {min(margins):.2f})")
        if epoch % 10 == 0:
            _say(progress, f"epoch {epoch}: worst answer-token margin {min(margins):.2f}")
    margin = min(margins)
    with torch.no_grad():
        accuracy = _loss_and_margin(w, cfg, state["held_out"])[2]
    _say(progress, f"every answer exact after {epoch} epochs (margin {margin:.2f}); "
                   f"held-out copy token accuracy {accuracy:.1%}")
    tensors = {k: v.detach().contiguous().clone() for k, v in w.items()}
    return tensors, {"parameters": state["parameters"], "epochs": epoch, "margin": round(margin, 3),
                     "copy_steps": state["copy_steps"], "copy_token_accuracy": round(accuracy, 4)}


# ---------------------------------------------------------------------------------------------- CLI


def cli_tiny(args) -> int:
    """`camp tiny [--force]`: the folder, and whether it was copied from the prebuilt files or trained (and how long
    that took)."""
    from camp.runtime.i18n import t

    force = bool(getattr(args, "force", False))
    cached = not force and is_complete(default_dir())
    path = ensure(force=force)
    marker = read_marker(path) or {}
    seconds = marker.get("build_seconds")
    print(path)
    if marker.get("source") == "prebuilt":
        print(t(f"{'已是最新，' if cached else ''}复制自仓库中预先训练好的文件（camp tiny --force 可重新训练）",
                f"{'up to date, ' if cached else ''}copied from the repository's prebuilt files "
                "(camp tiny --force trains it anew)"))
    elif seconds is not None:
        print(t(f"{'已是最新，' if cached else ''}训练用时 {seconds:.1f} 秒",
                f"{'up to date, ' if cached else ''}built in {seconds:.1f} s"))
    else:
        print(t("已构建", "built"))
    return 0


if __name__ == "__main__":  # python -m camp.models.tiny --write-prebuilt: refresh assets/tiny/prebuilt/
    if sys.argv[1:] != ["--write-prebuilt"]:
        raise SystemExit("usage: python -m camp.models.tiny --write-prebuilt")
    print(write_prebuilt(build(default_dir(), force=not is_complete(default_dir()))))
