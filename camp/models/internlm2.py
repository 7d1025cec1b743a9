"""InternLM2 / InternLM2.5 checkpoints → a plain Llama folder every environment loads natively.

Real InternLM2 checkpoints ship their own modelling code (`trust_remote_code=True`) written for
transformers ~4.37–4.41; it works on 4.48 (xtuner env) but breaks on 4.57 (opencompass env) and 5.x (core):
see docs/tool-notes.md. InternLM2 is Llama with a fused `wqkv` and other tensor names, so `normalize()` rewrites a
downloaded checkpoint once into `LlamaForCausalLM` + a `tokenizers` fast tokenizer, with no remote code.
Logits equal the original's (tests/test_internlm2.py measures it in transformers 4.48, 4.57 and 5.x).

Only torch + safetensors are needed (no transformers, no sentencepiece): the sentencepiece `tokenizer.model`
is read with a small protobuf reader here and written out as `tokenizer.json`.

Output folder (default: a sibling `<name>-llama`, or `models_dir()/<name>-llama` when the source sits in a
read-only place such as InternStudio's shared model folder):
    config.json                 LlamaForCausalLM, 4.x style (rope_theta + rope_scaling, read by 4.x and 5.x)
    model*.safetensors (+index) same dtype, one output shard per input shard
    tokenizer.json              fast tokenizer (reused from the source when it already has one)
    tokenizer_config.json       PreTrainedTokenizerFast, the original chat_template and special tokens
    generation_config.json, tokenizer.model, README … copied; no *.py remote code
    .camp-complete              JSON marker, written last: source path, source fingerprint, converter version
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path

from camp.runtime import config, markers
from camp.runtime.errors import CampError

CONVERTER_VERSION = 1
MARKER = markers.MARKER
SUFFIX = "-llama"

_ARCH = "InternLM2ForCausalLM"
_SPIECE = "\u2581"  # sentencepiece's visible space "▁"

# Files never copied to the normalised folder: remote code, the weights and configs we rewrite, hub bookkeeping.
_SKIP_SUFFIXES = (".py", ".pyc", ".bin", ".safetensors", ".pt", ".pth", ".lock")
_SKIP_NAMES = {
    "config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    MARKER,
}

# tokenizer_config keys that only make sense for InternLM2's own tokenizer classes.
_TOKENIZER_KEYS_DROPPED = (
    "auto_map",
    "tokenizer_class",
    "vocab_file",
    "tokenizer_file",
    "sp_model_kwargs",
    "decode_with_prefix_space",
    "name_or_path",
    "use_fast",
)


# ----------------------------------------------------------------------------------------------------- detection


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampError(f"{path} is missing — is {path.parent} a model folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CampError(f"{path} is not valid JSON ({e}) — re-download the model") from None


def is_internlm2(path: str | os.PathLike) -> bool:
    """True when `path/config.json` describes an InternLM2/2.5 model (architectures or model_type)."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(cfg, dict):
        return False
    archs = cfg.get("architectures") or []
    return cfg.get("model_type") == "internlm2" or any(str(a).startswith("InternLM2") for a in archs)


# --------------------------------------------------------------------------------------------------------- config


def _llama_config(cfg: dict, src: Path) -> dict:
    """The LlamaConfig (4.x layout) equivalent to an InternLM2 config.json."""
    archs = cfg.get("architectures") or [_ARCH]
    if archs != [_ARCH]:
        raise CampError(
            f"{src / 'config.json'}: architectures {archs} — only {_ARCH} checkpoints can be normalised "
            "(reward and classification heads have no Llama equivalent)"
        )
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        layers = int(cfg["num_hidden_layers"])
        inter = int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise CampError(f"{src / 'config.json'}: missing or bad field {e} — re-download the model") from None
    kv = int(cfg.get("num_key_value_heads") or heads)
    if hidden % heads or heads % kv:
        raise CampError(
            f"{src / 'config.json'}: hidden_size {hidden}, num_attention_heads {heads}, num_key_value_heads {kv} "
            "are inconsistent — re-download the model"
        )
    scaling = cfg.get("rope_scaling")
    if scaling is not None:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind not in ("linear", "dynamic") or "factor" not in scaling:
            raise CampError(
                f"{src / 'config.json'}: rope_scaling {scaling} is not linear/dynamic — cannot convert"
            )
        # 4.x reads {"type", "factor"}; 5.x turns it into rope_parameters itself.
        scaling = {"type": kind, "factor": float(scaling["factor"])}
    out = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hidden // heads,
        "hidden_act": cfg.get("hidden_act", "silu"),
        "max_position_embeddings": int(cfg.get("max_position_embeddings", 2048)),
        "initializer_range": cfg.get("initializer_range", 0.02),
        "rms_norm_eps": cfg.get("rms_norm_eps", 1e-6),
        "use_cache": cfg.get("use_cache", True),
        "pad_token_id": cfg.get("pad_token_id", 0),
        "bos_token_id": cfg.get("bos_token_id", 1),
        "eos_token_id": cfg.get("eos_token_id", 2),
        "pretraining_tp": 1,  # InternLM2's TP slicing is the same product, just split
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "rope_theta": float(cfg.get("rope_theta", 10000.0)),
        "rope_scaling": scaling,
        "attention_bias": bool(cfg.get("bias", True)),  # InternLM2Config's default is bias=True
        "attention_dropout": 0.0,
        "mlp_bias": False,
    }
    if cfg.get("torch_dtype"):
        out["torch_dtype"] = cfg["torch_dtype"]
    return out


# -------------------------------------------------------------------------------------------------------- weights


def _weight_files(src: Path) -> tuple[list[Path], str]:
    """The source's weight shards in order, and their format ("safetensors" or "bin")."""
    for fmt, single, index in (
        ("safetensors", "model.safetensors", "model.safetensors.index.json"),
        ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (src / index).is_file():
            weight_map = _read_json(src / index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CampError(f"{src / index} has no weight_map — re-download the model")
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (src / f).is_file()]
            if missing:
                raise CampError(
                    f"{src}: {index} lists {len(missing)} missing shard(s), e.g. {missing[0]} — "
                    "the download is incomplete: download it again"
                )
            return [src / f for f in files], fmt
        if (src / single).is_file():
            return [src / single], fmt
    raise CampError(
        f"{src}: no weights (model.safetensors[.index.json] or pytorch_model.bin[.index.json]) — "
        "the download is incomplete: download it again"
    )


def _load_shard(path: Path, fmt: str) -> dict:
    import torch

    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # files from torch.save's legacy (pre-zip) format cannot be memory-mapped
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated/corrupt file raises many different types
        raise CampError(f"{path} cannot be read ({type(e).__name__}: {e}) — re-download the model") from None


def _convert_tensors(tensors: dict, shard: Path, cfg: dict) -> dict:
    """Rename one shard's tensors to Llama names; split the fused wqkv."""
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hidden, head_dim = cfg["hidden_size"], cfg["head_dim"]
    groups = heads // kv
    renames = {
        "attention.wo": "self_attn.o_proj",
        "feed_forward.w1": "mlp.gate_proj",
        "feed_forward.w3": "mlp.up_proj",
        "feed_forward.w2": "mlp.down_proj",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    out: dict = {}
    for name, t in tensors.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope_theta by every implementation
        if name == "model.tok_embeddings.weight":
            out["model.embed_tokens.weight"] = t
        elif name == "output.weight":
            out["lm_head.weight"] = t
        elif name == "model.norm.weight":
            out[name] = t
        elif name.startswith("model.layers.") and ".attention.wqkv." in name:
            prefix, _, kind = name.rpartition(".attention.wqkv.")
            want = (heads + 2 * kv) * head_dim
            shape = tuple(t.shape)
            if (kind == "weight" and shape != (want, hidden)) or (kind == "bias" and shape != (want,)):
                raise CampError(
                    f"{shard}: {name} has shape {list(shape)}, config.json implies "
                    f"{[want, hidden] if kind == 'weight' else [want]} — the weights do not match the config"
                )
            # Each kv group holds its `groups` query heads, then one k head, then one v head.
            view = t.reshape(kv, groups + 2, head_dim, *shape[1:])
            q = view[:, :groups].reshape(heads * head_dim, *shape[1:])
            k = view[:, groups].reshape(kv * head_dim, *shape[1:])
            v = view[:, groups + 1].reshape(kv * head_dim, *shape[1:])
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}.self_attn.{proj}.{kind}"] = part.clone().contiguous()
        elif name.startswith("model.layers."):
            for old, new in renames.items():
                if f".{old}." in name:
                    out[name.replace(f".{old}.", f".{new}.")] = t
                    break
            else:
                raise CampError(
                    f"{shard}: unexpected tensor {name} — not an InternLM2ForCausalLM checkpoint?"
                )
        else:
            raise CampError(f"{shard}: unexpected tensor {name} — not an InternLM2ForCausalLM checkpoint?")
    return {k: v.contiguous() for k, v in out.items()}


def _expected_keys(cfg: dict) -> set[str]:
    keys = {"model.embed_tokens.weight", "model.norm.weight"}
    if not cfg["tie_word_embeddings"]:
        keys.add("lm_head.weight")
    per_layer = [
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    ]
    if cfg["attention_bias"]:
        per_layer += [f"self_attn.{p}.bias" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    for i in range(cfg["num_hidden_layers"]):
        keys.update(f"model.layers.{i}.{p}" for p in per_layer)
    return keys


def _check_shapes(tensors: dict, shard: Path, cfg: dict) -> None:
    hidden, vocab, inter = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    kv_dim = cfg["num_key_value_heads"] * cfg["head_dim"]
    want = {
        "model.embed_tokens.weight": (vocab, hidden),
        "lm_head.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
    }
    suffix = {
        "input_layernorm.weight": (hidden,),
        "post_attention_layernorm.weight": (hidden,),
        "self_attn.k_proj.weight": (kv_dim, hidden),
        "self_attn.o_proj.weight": (hidden, hidden),
        "mlp.gate_proj.weight": (inter, hidden),
        "mlp.up_proj.weight": (inter, hidden),
        "mlp.down_proj.weight": (hidden, inter),
    }
    for name, t in tensors.items():
        expected = suffix.get(name.split(".", 3)[-1]) if name.startswith("model.layers.") else want.get(name)
        if expected is not None and tuple(t.shape) != expected:
            raise CampError(
                f"{shard}: tensor for {name} has shape {list(t.shape)}, config.json implies {list(expected)} — "
                "the weights do not match the config"
            )


# ------------------------------------------------------------------------------------------------------ tokenizer


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message (enough for sentencepiece's model)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 1:
            val, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = buf[i : i + n], i + n
        elif wire == 5:
            val, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, val


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_sentencepiece(path: str | os.PathLike) -> dict:
    """The parts of a sentencepiece ModelProto a fast tokenizer needs (field numbers: sentencepiece_model.proto)."""
    buf = Path(path).read_bytes()
    pieces: list[tuple[str, float, int]] = []
    trainer = {"model_type": 1, "byte_fallback": False, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
    norm = {"name": "", "precompiled_charsmap": b"", "add_dummy_prefix": True,
            "remove_extra_whitespaces": True, "escape_whitespaces": True}  # fmt: skip
    trainer_ints = {3: "model_type", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
    norm_bools = {3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}
    for num, _wire, val in _fields(buf):
        if num == 1:
            piece, score, kind = "", 0.0, 1
            for n, _w, v in _fields(val):
                if n == 1:
                    piece = v.decode("utf-8")
                elif n == 2:
                    score = struct.unpack("<f", v)[0]
                elif n == 3:
                    kind = v
            pieces.append((piece, score, kind))
        elif num == 2:
            for n, _w, v in _fields(val):
                if n in trainer_ints:
                    trainer[trainer_ints[n]] = _signed(v)
                elif n == 35:
                    trainer["byte_fallback"] = bool(v)
        elif num == 3:
            for n, _w, v in _fields(val):
                if n == 1:
                    norm["name"] = v.decode("utf-8")
                elif n == 2:
                    norm["precompiled_charsmap"] = bytes(v)
                elif n in norm_bools:
                    norm[norm_bools[n]] = bool(v)
    if not pieces:
        raise ValueError("no pieces")
    return {"pieces": pieces, "trainer": trainer, "normalizer": norm}


def _bpe_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """Merges that make `tokenizers`' BPE reproduce sentencepiece's: sentencepiece joins the adjacent pair whose
    result has the highest score, so every split of a normal piece into two vocab pieces is a merge ranked by the
    merged piece's score (ties: vocab order)."""
    ids = {p: i for i, (p, _s, _k) in enumerate(pieces)}
    found = []
    for i, (piece, score, kind) in enumerate(pieces):
        if kind != 1 or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                found.append((-score, i, ids[left], ids[right], left, right))
    found.sort()
    return [(f[4], f[5]) for f in found]


def _added_token(
    content: str, id_: int, *, special: bool, normalized: bool, spec: dict | None = None
) -> dict:
    spec = spec or {}
    return {
        "id": id_,
        "content": content,
        "single_word": bool(spec.get("single_word", False)),
        "lstrip": bool(spec.get("lstrip", False)),
        "rstrip": bool(spec.get("rstrip", False)),
        "normalized": bool(spec.get("normalized", normalized)),
        "special": bool(spec.get("special", special)),
    }


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def sentencepiece_to_tokenizer_json(model_file: str | os.PathLike, tok_cfg: dict) -> dict:
    """A `tokenizers` tokenizer.json that encodes like InternLM2Tokenizer (sentencepiece per text chunk between
    added tokens, bos prepended) and decodes like sentencepiece."""
    try:
        sp = read_sentencepiece(model_file)
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise CampError(f"{model_file} is not a sentencepiece model ({e}) — re-download the model") from None
    if sp["trainer"]["model_type"] != 2:
        raise CampError(
            f"{model_file}: sentencepiece model type {sp['trainer']['model_type']} is not BPE; "
            "InternLM2 tokenizers are BPE — this checkpoint is not supported"
        )
    pieces = sp["pieces"]
    declared = {int(k): v for k, v in (tok_cfg.get("added_tokens_decoder") or {}).items()}
    vocab: dict[str, int] = {}
    for i, (piece, _s, _k) in enumerate(pieces):
        name = declared[i]["content"] if i in declared else piece
        vocab.setdefault(name, i)

    norm = sp["normalizer"]
    added = {}
    for i, spec in declared.items():
        # transformers splits text on these before sentencepiece sees it: match on the raw text
        added[i] = _added_token(spec["content"], i, special=True, normalized=False, spec=spec)
    for i, (piece, _s, kind) in enumerate(pieces):
        if i in added:
            continue
        if kind in (2, 3):  # <unk>, <s>, </s>: special tokens in transformers
            added[i] = _added_token(piece, i, special=True, normalized=False)
        elif kind == 4:
            # user-defined: sentencepiece keeps them whole inside its normalised text, i.e. normalized=True.
            # With a dummy prefix `tokenizers` would normalise the token itself to "▁tok" and miss most
            # occurrences; raw-text matching then differs from sentencepiece only in where a "▁" goes around
            # such a piece (InternLM2 has no dummy prefix; its user pieces are unused placeholders).
            added[i] = _added_token(piece, i, special=False, normalized=not norm["add_dummy_prefix"])

    steps: list[dict] = []
    if norm["precompiled_charsmap"]:
        charsmap = base64.b64encode(norm["precompiled_charsmap"]).decode()
        steps.append({"type": "Precompiled", "precompiled_charsmap": charsmap})
    if norm["remove_extra_whitespaces"]:
        # sentencepiece drops leading/trailing spaces and squeezes runs; only " ", not "\n" or "\t"
        steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
        steps.append({"type": "Replace", "pattern": {"Regex": "\\A | \\z"}, "content": ""})
    if norm["add_dummy_prefix"]:
        steps.append({"type": "Prepend", "prepend": _SPIECE})
    if norm["escape_whitespaces"]:
        steps.append({"type": "Replace", "pattern": {"String": " "}, "content": _SPIECE})

    decoders = [
        {"type": "Replace", "pattern": {"String": _SPIECE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if norm["add_dummy_prefix"]:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})

    id_to_token = {i: t for t, i in vocab.items()} | {i: a["content"] for i, a in added.items()}
    bos_id, eos_id = sp["trainer"]["bos_id"], sp["trainer"]["eos_id"]
    bos = _token_text(tok_cfg.get("bos_token")) or (id_to_token.get(bos_id) if bos_id >= 0 else None)
    eos = _token_text(tok_cfg.get("eos_token")) or (id_to_token.get(eos_id) if eos_id >= 0 else None)
    token_id = {t: i for i, t in sorted(id_to_token.items(), reverse=True)}
    post = _template(
        bos if tok_cfg.get("add_bos_token", True) else None,
        eos if tok_cfg.get("add_eos_token", False) else None,
        token_id,
        model_file,
    )

    merges = _bpe_merges(pieces)
    unk_id = sp["trainer"]["unk_id"]
    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": id_to_token.get(unk_id) if unk_id >= 0 else None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": bool(sp["trainer"]["byte_fallback"]),
        "vocab": vocab,
        # "a b" strings are read by every tokenizers release; pairs only by >=0.20 (needed if a piece has a space)
        "merges": [[a, b] for a, b in merges]
        if any(" " in a or " " in b for a, b in merges)
        else [f"{a} {b}" for a, b in merges],
    }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added[i] for i in sorted(added)],
        "normalizer": {"type": "Sequence", "normalizers": steps} if steps else None,
        "pre_tokenizer": None,
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": model,
    }


def _template(bos: str | None, eos: str | None, token_id: dict, model_file) -> dict:
    """InternLM2Tokenizer.build_inputs_with_special_tokens: [bos] + a (+ b) (+ eos)."""
    specials = {}
    for tok in (bos, eos):
        if tok is None:
            continue
        if tok not in token_id:
            raise CampError(f"{model_file}: special token {tok!r} is not in the vocabulary — cannot convert")
        specials[tok] = {"id": tok, "ids": [token_id[tok]], "tokens": [tok]}

    def special(tok: str, type_id: int) -> list:
        return [{"SpecialToken": {"id": tok, "type_id": type_id}}] if tok else []

    def sequence(part: str, type_id: int) -> list:
        return [{"Sequence": {"id": part, "type_id": type_id}}]

    return {
        "type": "TemplateProcessing",
        "single": special(bos, 0) + sequence("A", 0) + special(eos, 0),
        "pair": special(bos, 0) + sequence("A", 0) + sequence("B", 1) + special(eos, 1),
        "special_tokens": specials,
    }


def _tokenizer_files(src: Path, tmp: Path, max_positions: int) -> None:
    """Write tokenizer.json + tokenizer_config.json for PreTrainedTokenizerFast (no remote code)."""
    cfg_path = src / "tokenizer_config.json"
    tok_cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
    if (src / "tokenizer.json").is_file():
        shutil.copy2(src / "tokenizer.json", tmp / "tokenizer.json")
    elif (src / "tokenizer.model").is_file():
        data = sentencepiece_to_tokenizer_json(src / "tokenizer.model", tok_cfg)
        with open(tmp / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
    else:
        raise CampError(f"{src}: neither tokenizer.json nor tokenizer.model — the download is incomplete")
    out = {k: v for k, v in tok_cfg.items() if k not in _TOKENIZER_KEYS_DROPPED}
    for key, default in (
        ("bos_token", "<s>"),
        ("eos_token", "</s>"),
        ("unk_token", "<unk>"),
        ("pad_token", "</s>"),
    ):
        out.setdefault(key, default)
    out.setdefault("add_bos_token", True)
    out.setdefault("add_eos_token", False)
    out.setdefault("clean_up_tokenization_spaces", False)
    if not isinstance(out.get("model_max_length"), int) or out["model_max_length"] > 1 << 40:
        out["model_max_length"] = max_positions
    out["model_input_names"] = ["input_ids", "attention_mask"]
    out["tokenizer_class"] = "PreTrainedTokenizerFast"
    if "chat_template" not in out and (src / "chat_template.jinja").is_file():
        out["chat_template"] = (src / "chat_template.jinja").read_text(encoding="utf-8")
    with open(tmp / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)


# ----------------------------------------------------------------------------------------------------- normalize


def _fingerprint(src: Path) -> dict:
    files, _fmt = _weight_files(src)
    return {
        "source_config_sha256": hashlib.sha256((src / "config.json").read_bytes()).hexdigest(),
        "source_weights": [[f.name, f.stat().st_size] for f in files],
    }


def _is_complete(dst: Path, src: Path, fingerprint: dict) -> bool:
    return markers.is_complete(dst, "internlm2-llama", converter_version=CONVERTER_VERSION,
                               source_config_sha256=fingerprint["source_config_sha256"],
                               source_weights=fingerprint["source_weights"])


def _remove_stale(dst: Path) -> None:
    """Temp folders left by a conversion that was killed (its process is gone)."""
    for tmp in dst.parent.glob(f".{dst.name}.camp-*-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def default_destination(src: str | os.PathLike) -> Path:
    """`<src>-llama` next to the source, or under camp's models folder when the source's folder is read-only."""
    src = Path(src).resolve()
    if os.access(src.parent, os.W_OK):
        return src.parent / f"{src.name}{SUFFIX}"
    return config.models_dir() / f"{src.name}{SUFFIX}"


def _progress(items: list, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(items, desc=desc, unit="shard", file=sys.stderr)


def normalize(src: str | os.PathLike, dst: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Convert the InternLM2 checkpoint in `src` into a plain Llama folder and return its path.

    Instant when `dst` already holds a complete conversion of the same source (marker `.camp-complete`);
    `force=True` converts again. The folder appears only once everything is written (temp sibling + rename).
    """
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise CampError(f"{src} is not a folder — pass the downloaded model folder")
    if not is_internlm2(src):
        raise CampError(
            f"{src / 'config.json'}: not an InternLM2 checkpoint (architectures/model_type) — "
            "only InternLM2/2.5 models need normalising"
        )
    dst = Path(dst).expanduser().resolve() if dst is not None else default_destination(src)
    if dst == src:
        raise CampError(f"{dst}: the destination must differ from the source folder")
    src_cfg = _read_json(src / "config.json")
    llama_cfg = _llama_config(src_cfg, src)
    fingerprint = _fingerprint(src)
    if dst.exists() and not force:
        if _is_complete(dst, src, fingerprint):
            return dst
        if not (dst / MARKER).exists():
            raise CampError(
                f"{dst} exists but is not a camp conversion — remove it or pass another destination (force=True)"
            )
        # a conversion of an older source or converter version: redo it below

    dst.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dst)
    tmp = dst.parent / f".{dst.name}.camp-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(src, tmp, src_cfg, llama_cfg, fingerprint)
        if dst.exists():
            old = dst.parent / f".{dst.name}.camp-old-{os.getpid()}"
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _write(src: Path, tmp: Path, src_cfg: dict, llama_cfg: dict, fingerprint: dict) -> None:
    from safetensors.torch import save_file

    files, fmt = _weight_files(src)
    n = len(files)
    names = (
        ["model.safetensors"]
        if n == 1
        else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    )
    weight_map: dict[str, str] = {}
    total = 0
    bar = _progress(files, f"normalise {src.name}")
    for i, (shard, out_name) in enumerate(zip(files, names, strict=True), 1):
        t0 = time.monotonic()
        tensors = _convert_tensors(_load_shard(shard, fmt), shard, llama_cfg)
        _check_shapes(tensors, shard, llama_cfg)
        clash = sorted(set(tensors) & set(weight_map))
        if clash:
            raise CampError(
                f"{shard}: {clash[0]} also appears in another shard — the download is inconsistent"
            )
        save_file(tensors, str(tmp / out_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, out_name))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        if bar is not None:
            bar.set_postfix_str(shard.name, refresh=False)
            bar.update(1)
        else:
            secs = time.monotonic() - t0
            print(f"normalise {src.name}: shard {i}/{n} {shard.name} ({len(tensors)} tensors, {secs:.1f} s)")
        del tensors
    if bar is not None:
        bar.close()
    missing = sorted(_expected_keys(llama_cfg) - set(weight_map))
    if missing:
        raise CampError(
            f"{src}: {len(missing)} weight(s) missing after reading every shard, e.g. {missing[0]} — "
            "the download is incomplete: download it again"
        )
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (tmp / "config.json").write_text(json.dumps(llama_cfg, indent=2))
    _tokenizer_files(src, tmp, llama_cfg["max_position_embeddings"])
    for f in sorted(src.iterdir()):
        if (
            f.is_file()
            and not f.name.startswith(".")
            and f.name not in _SKIP_NAMES
            and not f.name.endswith(_SKIP_SUFFIXES)
        ):
            shutil.copy2(f, tmp / f.name)
    # fingerprint lists are JSON lists: recorded as the marker will read them back
    markers.mark(tmp, "internlm2-llama", source=str(src), **json.loads(json.dumps(fingerprint)),
                 source_architecture=(src_cfg.get("architectures") or [_ARCH])[0], converter="camp.models.internlm2",
                 converter_version=CONVERTER_VERSION)
