"""Real shapes, random weights: a catalogue model's exact architecture without its download.

Speed, memory and every tool's code path (LMDeploy's kernels, XTuner's QLoRA, the planner's formula) depend on a
model's shapes and dtypes, not on its weight values. `build("internlm2_5-1_8b-chat")` writes a checkpoint with the
published architecture — config.json (InternLM2ForCausalLM, `auto_map` to its remote code), the InternLM2 modelling
code (configuration_internlm2.py + modeling_internlm2.py, the copy XTuner's wheel ships), bf16 weights with the
InternLM2 tensor names (fused `wqkv`, `w1/w3/w2`, `output`) in shards as downloads come — so a GPU machine with no
model hub can measure the real figures. `prepare()` then normalises it exactly as a download is
(camp.models.internlm2.normalize) and returns the Llama folder every stage takes.

**Every figure measured on such a folder is "random weights — shapes only" (`NOTE`): say so wherever it is shown.**
Answers are noise; throughput, latency, memory and file sizes are the real model's.

Deliberate differences from the download, all outside the shapes:
  * weights: normal(0, 0.02) (InternLM2's initializer_range), norms 1.0, seeded; the output-head rows of the stop
    tokens (</s>, <|im_end|>) are zero, so greedy decoding never stops early and every request produces the
    max_tokens it asked for (a random model would otherwise end answers at random lengths);
  * tokenizer: not InternLM2's sentencepiece model (not redistributable here). camp's tiny byte-level BPE, trained
    on the kit's course text (camp.models.tiny), is laid out in the real id space: <unk> <s> </s> at 0–2, its
    learned pieces from 3, placeholder pieces `<shapeN>` up to 92537 (unreachable by encoding; they only make
    every id the model can emit decodable), and the six chat tokens at their real ids 92538–92543. The vocabulary
    size is the real 92,544, so embeddings, head and logits have their real shapes; the same text encodes to more
    tokens than with the real tokenizer (~2000 learned pieces instead of 92k), so measure in tokens, not characters;
  * tokenizer.json + a PreTrainedTokenizerFast tokenizer_config.json stand in for tokenizer.model and
    tokenization_internlm2*.py; the chat template, special tokens and generation_config are the published ones.

`scale="ci"` keeps everything but the widths and depth (hidden 64, 2 layers, 4 query heads with the model's
query/kv head ratio, the model's MLP ratio; vocabulary, context, dtype, names, code and tokenizer unchanged): the
same code path builds it on a CPU in a few seconds, for the rehearsal in `make test`.

Folders: `models_dir()/<model>-shapes[-ci]` (InternLM2 layout, marker kind "random-weights") and its normalised
sibling `…-llama` (the normaliser's own marker, plus `shapes.json` naming the origin).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from camp.runtime import config, markers
from camp.runtime.errors import CampError

KIND = "random-weights"
NOTE = "random weights — shapes only"
SCALES = ("full", "ci")
RECIPE_VERSION = 1
SHARD_BYTES = 2 * 1024**3  # about what the published checkpoints use (~2 GB per shard)
INIT_STD = 0.02  # InternLM2Config.initializer_range
REMOTE_CODE = ("configuration_internlm2.py", "modeling_internlm2.py")
WHEEL_CODE_DIR = "xtuner/_lite/modelings/internlm2/"  # where the xtuner 0.2.0 wheel keeps the remote code
REAL_VOCAB = 92544
# The published chat tokens and their ids in InternLM2's tokenizer (tokenizer_config.json added_tokens_decoder).
CHAT_TOKENS = {92538: "<|plugin|>", 92539: "<|interpreter|>", 92540: "<|action_end|>", 92541: "<|action_start|>",
               92542: "<|im_end|>", 92543: "<|im_start|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Published config.json fields beyond the sizes the catalogue records (rope settings change no shape or speed
# at the lengths measured here; they are kept so every tool reads the same kind of config it meets in a download).
_PUBLISHED = {
    "internlm2-chat-1_8b": {"rope_theta": 1000000, "rope_scaling": None},
    "internlm2_5-1_8b-chat": {"rope_theta": 1000000, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
    "internlm2_5-7b-chat": {"rope_theta": 1000000, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
}
_CI = {"hidden_size": 64, "num_layers": 2, "num_heads": 4}


# ================================================================================ the shape
def _entry(model: str) -> dict:
    from camp.models.listing import get
    from camp.training.plan import _catalogue_entries

    m = get(model)
    entry = _catalogue_entries(str(config.assets_dir() / "models.json")).get(m.name, {})
    if m.arch != "internlm2" or "hidden_size" not in entry:
        choices = ", ".join(names())
        raise CampError(f"{model!r} is not an InternLM2 text model of the catalogue with recorded shapes — "
                        f"random-weight checkpoints are built for {choices}")
    return entry


def names() -> list[str]:
    """The catalogue models this module can build (InternLM2 text models with recorded shapes)."""
    from camp.models.listing import catalogue
    from camp.training.plan import _catalogue_entries

    entries = _catalogue_entries(str(config.assets_dir() / "models.json"))
    return [m.name for m in catalogue() if m.arch == "internlm2" and "hidden_size" in entries.get(m.name, {})]


def shape(model: str, scale: str = "full") -> dict:
    """The InternLM2 config.json for `model` at `scale` ("full": the published sizes; "ci": a few MB)."""
    if scale not in SCALES:
        raise CampError(f"scale {scale!r}: choose one of {', '.join(SCALES)}")
    e = _entry(model)
    hidden, layers, heads, kv = e["hidden_size"], e["num_layers"], e["num_heads"], e["num_kv_heads"]
    inter = e["intermediate_size"]
    if scale == "ci":
        group = heads // kv  # query heads per kv head: the GQA ratio is part of the shape that matters
        ratio = inter / hidden
        hidden, layers, heads = _CI["hidden_size"], _CI["num_layers"], _CI["num_heads"]
        kv = max(1, heads // group)
        inter = int(math.ceil(hidden * ratio / 32) * 32)
    extra = _PUBLISHED.get(e["name"], {"rope_theta": 1000000, "rope_scaling": None})
    return {
        "architectures": ["InternLM2ForCausalLM"],
        "attn_implementation": "eager",
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": INIT_STD,
        "intermediate_size": inter,
        "max_position_embeddings": e.get("max_position_embeddings", 32768),
        "model_type": "internlm2",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "pad_token_id": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": extra["rope_scaling"],
        "rope_theta": extra["rope_theta"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": e["vocab_size"],
    }


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of an InternLM2ForCausalLM checkpoint with this config, by its published name."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // heads
    out: dict[str, tuple[int, ...]] = {"model.tok_embeddings.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "attention.wqkv.weight"] = ((heads + 2 * kv) * d, h)
        out[p + "attention.wo.weight"] = (h, heads * d)
        out[p + "feed_forward.w1.weight"] = (inter, h)
        out[p + "feed_forward.w3.weight"] = (inter, h)
        out[p + "feed_forward.w2.weight"] = (h, inter)
        out[p + "attention_norm.weight"] = (h,)
        out[p + "ffn_norm.weight"] = (h,)
    out["model.norm.weight"] = (h,)
    out["output.weight"] = (v, h)
    return out


def weight_bytes(cfg: dict, bytes_per_param: int = 2) -> int:
    """Bytes of the weights (bf16 by default): what single-stream decoding reads from memory per token."""
    return sum(math.prod(s) for s in tensor_shapes(cfg).values()) * bytes_per_param


# ================================================================================ the remote code
def remote_code(source: str | os.PathLike | None = None) -> dict[str, str]:
    """The InternLM2 modelling code as published, {file name: text}, from (first found): `source` (a folder holding
    the two files, or an xtuner wheel), $CAMP_INTERNLM2_CODE (the same), xtuner importable here, the xtuner env."""
    candidates = [source, os.environ.get("CAMP_INTERNLM2_CODE")]
    for c in candidates:
        if c:
            return _read_code(Path(c).expanduser())
    import importlib.util

    spec = importlib.util.find_spec("xtuner")
    if spec is not None and spec.submodule_search_locations:
        return _read_code(Path(spec.submodule_search_locations[0]) / "_lite" / "modelings" / "internlm2")
    from camp.runtime import envs

    try:
        py = envs.python("xtuner")
    except CampError as exc:
        raise CampError("the InternLM2 modelling code comes from XTuner's wheel, and none is at hand: create the "
                        "xtuner env (`camp env create xtuner`), or pass the wheel (`pip download --no-deps "
                        "xtuner==0.2.0`) or a folder with configuration_internlm2.py and modeling_internlm2.py as "
                        "code= / CAMP_INTERNLM2_CODE") from exc
    r = subprocess.run([str(py), "-c", "import importlib.util as u; s = u.find_spec('xtuner'); "
                        "print(s.submodule_search_locations[0] if s else '')"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    if r.returncode != 0 or not r.stdout.strip():
        raise CampError(f"XTuner is not installed in the xtuner env ({py}) — run `camp env create xtuner --force`")
    return _read_code(Path(r.stdout.strip()) / "_lite" / "modelings" / "internlm2")


def _read_code(path: Path) -> dict[str, str]:
    if path.is_file() and path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            try:
                return {n: z.read(WHEEL_CODE_DIR + n).decode("utf-8") for n in REMOTE_CODE}
            except KeyError:
                raise CampError(f"{path} has no {WHEEL_CODE_DIR}{{{','.join(REMOTE_CODE)}}} — give an xtuner 0.2.0 "
                                "wheel") from None
    missing = [n for n in REMOTE_CODE if not (path / n).is_file()]
    if missing:
        raise CampError(f"{path} lacks {', '.join(missing)} — give the folder of XTuner's InternLM2 modelling code "
                        "(xtuner/_lite/modelings/internlm2) or an xtuner wheel")
    return {n: (path / n).read_text(encoding="utf-8") for n in REMOTE_CODE}


# ================================================================================ the tokenizer
@functools.lru_cache(maxsize=1)
def _tiny_tokenizer() -> str:
    from camp.models import tiny

    return tiny._train_tokenizer(tiny.load_dialogues()).to_str()  # deterministic: trained once per process


def tokenizer_json(vocab_size: int = REAL_VOCAB) -> dict:
    """camp's tiny byte-level BPE (trained on the course text) laid out in InternLM2's id space (module doc)."""
    from camp.models import tiny

    first_chat = min(CHAT_TOKENS)
    if vocab_size != REAL_VOCAB:
        raise CampError(f"vocab_size {vocab_size}: the chat tokens sit at InternLM2's ids {first_chat}–"
                        f"{REAL_VOCAB - 1}, so only the real vocabulary size ({REAL_VOCAB}) is laid out")
    data = json.loads(_tiny_tokenizer())
    learned = data["model"]["vocab"]
    specials = set(tiny.SPECIAL_TOKENS)
    vocab = {tiny.UNK: 0, tiny.BOS: 1, tiny.EOS: 2}
    for piece, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        if piece not in specials:
            vocab[piece] = len(vocab)
    if len(vocab) > first_chat:
        raise CampError(f"the tiny tokenizer has {len(vocab)} pieces, more than the {first_chat} ids before the "
                        "chat tokens")
    i = 0
    while len(vocab) < first_chat:
        vocab.setdefault(f"<shape{i}>", len(vocab))
        i += 1
    for id_, text in sorted(CHAT_TOKENS.items()):
        vocab[text] = id_
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for t in [tiny.UNK, tiny.BOS, tiny.EOS, *[CHAT_TOKENS[k] for k in sorted(CHAT_TOKENS)]]
    ]
    post = data.get("post_processor") or {}
    for spec in (post.get("special_tokens") or {}).values():
        spec["ids"] = [vocab[t] for t in spec["tokens"]]
    return data


def _tokenizer_config() -> dict:
    special = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    added = {"0": {"content": "<unk>", **special}, "1": {"content": "<s>", **special},
             "2": {"content": "</s>", **special}}
    added.update({str(i): {"content": t, **special} for i, t in sorted(CHAT_TOKENS.items())})
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>",
        "additional_special_tokens": [CHAT_TOKENS[k] for k in sorted(CHAT_TOKENS, reverse=True)],
        "added_tokens_decoder": added,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 32768,
        "model_input_names": ["input_ids", "attention_mask"],
        "chat_template": CHAT_TEMPLATE,
    }  # fmt: skip


# ================================================================================ the weights
def _fill(shape_: tuple[int, ...], name: str, gen, device: str, stop_rows: list[int]):
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape_, dtype=torch.bfloat16)
    t = torch.empty(shape_, dtype=torch.float32, device=device).normal_(0.0, INIT_STD, generator=gen)
    t = t.to(torch.bfloat16)
    if name == "output.weight":
        t[stop_rows] = 0  # greedy decoding never picks a stop token (module doc)
    return t.cpu()


def _write_weights(folder: Path, cfg: dict, seed: int, device: str | None) -> int:
    import torch
    from safetensors.torch import save_file

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    shapes = tensor_shapes(cfg)
    stop_rows = [cfg["eos_token_id"], 92542] if cfg["vocab_size"] > 92542 else [cfg["eos_token_id"]]
    # shards in order, each up to SHARD_BYTES (a tensor is never split)
    groups: list[list[str]] = [[]]
    size = 0
    for name, s in shapes.items():
        n = math.prod(s) * 2
        if groups[-1] and size + n > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n
    total = len(groups)
    weight_map: dict[str, str] = {}
    nbytes = 0
    for k, group in enumerate(groups, 1):
        fname = "model.safetensors" if total == 1 else f"model-{k:05d}-of-{total:05d}.safetensors"
        tensors = {n: _fill(shapes[n], n, gen, device, stop_rows) for n in group}
        save_file(tensors, str(folder / fname), metadata={"format": "pt"})
        nbytes += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(group, fname))
        del tensors
    if total > 1:
        index = {"metadata": {"total_size": nbytes}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return nbytes


# ================================================================================ build / prepare
def default_dir(model: str, scale: str = "full") -> Path:
    from camp.models.listing import get

    return config.models_dir() / f"{get(model).name}-shapes{'' if scale == 'full' else '-' + scale}"


def is_complete(folder: str | os.PathLike, model: str | None = None, scale: str | None = None) -> bool:
    expect = {"recipe": RECIPE_VERSION}
    if model is not None:
        expect["model"] = model
    if scale is not None:
        expect["scale"] = scale
    return markers.is_complete(folder, KIND, **expect)


def build(model: str, out: str | os.PathLike | None = None, *, scale: str = "full", seed: int = 0,
          device: str | None = None, code: str | os.PathLike | None = None, show=None) -> Path:
    """The InternLM2-layout random-weight checkpoint of `model` at `scale` (module doc); instant when complete.
    device: where the random numbers are drawn ("cuda" is much faster for 7B; default: cuda when present)."""
    from camp.models.listing import get
    from camp.runtime import progress

    name = get(model).name
    cfg = shape(name, scale)
    folder = Path(out).expanduser().resolve() if out else default_dir(name, scale)
    if is_complete(folder, name, scale):
        return folder
    if folder.exists() and markers.read(folder) is None and any(folder.iterdir()):
        raise CampError(f"{folder} exists and is not a random-weight build — remove it or pass another out=")
    view = progress.get(show)
    # before anything is written: a missing source fails fast. code="none": no remote code (the folder then loads
    # only after normalisation; speed and memory are the same — the GPU check's fallback on a machine without it)
    files = {} if code == "none" else remote_code(code)
    if not files:
        cfg = {k: v for k, v in cfg.items() if k != "auto_map"}
    t0 = time.time()
    view.say(f"shapes: building {name} ({scale}) with random weights in {folder} — {NOTE}")
    with markers.building(folder, replace=True) as tmp:
        for fname, text in files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": 1, "eos_token_id": [2, 92542], "pad_token_id": 2}, indent=2) + "\n")
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_json(cfg["vocab_size"]), ensure_ascii=False))
        (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), ensure_ascii=False, indent=2))
        (tmp / "special_tokens_map.json").write_text(json.dumps(
            {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}, indent=2))
        nbytes = _write_weights(tmp, cfg, seed, device)
        (tmp / "README.md").write_text(
            f"# {name} — {NOTE}\n\nThe published architecture of {name} with random weights (seed {seed}, scale "
            f"{scale}), built by camp.models.shapes. Figures measured on it are the real model's speed and memory, "
            "never its quality.\n", encoding="utf-8")
        markers.mark(tmp, KIND, model=name, scale=scale, seed=seed, recipe=RECIPE_VERSION, note=NOTE,
                     weight_bytes=nbytes, remote_code=bool(files), seconds=round(time.time() - t0, 1))
    view.say(f"shapes: {name} ({scale}) built in {time.time() - t0:.0f} s, {nbytes / 1e9:.2f} GB of weights")
    return folder


def prepare(model: str, *, scale: str = "full", seed: int = 0, device: str | None = None,
            code: str | os.PathLike | None = None, show=None) -> Path:
    """build(), then normalise it as a download is (camp.models.internlm2.normalize): the Llama folder that
    camp.serve / finetune / evaluate / quantize take (pass its path as the model)."""
    from camp.models import internlm2

    src = build(model, scale=scale, seed=seed, device=device, code=code, show=show)
    dst = internlm2.normalize(src)
    origin = dst / "shapes.json"
    info = {k: v for k, v in (markers.read(src) or {}).items() if k not in ("files", "camp_marker")}
    if markers.read_json(origin) != {**info, "source": str(src)}:
        markers.write_json(origin, {**info, "source": str(src)})
    return dst


def origin(folder: str | os.PathLike) -> dict | None:
    """What a folder built here says about itself (model, scale, seed, note), or None for a real model."""
    folder = Path(folder)
    data = markers.read(folder) if markers.read(folder) and markers.read(folder).get("kind") == KIND else None
    return data or markers.read_json(folder / "shapes.json") or None


def remove(model: str, scale: str = "full") -> None:
    """Delete both folders of a build (the InternLM2 one and its -llama sibling)."""
    folder = default_dir(model, scale)
    for f in (folder, folder.parent / f"{folder.name}-llama"):
        shutil.rmtree(f, ignore_errors=True)
