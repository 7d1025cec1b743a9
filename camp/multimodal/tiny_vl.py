"""tiny-vl: the embedded vision-language model, built locally and offline on top of `tiny` in about a minute.

A LLaVA (`LlavaForConditionalGeneration`): a small CLIP vision tower sees a 48-px picture as 6×6 patches; a
two-layer projector turns each patch into one "image token" in the language model's embedding space; the 36 image
tokens take the place of the `<image>` placeholder in the prompt, and `tiny` (the embedded chat model, plus that one
token) reads them like words. The build trains the whole model on generated pictures (camp.multimodal.scenes) until
it answers held-out pictures exactly — the colour on each side and a one-sentence description, in Chinese and
English — with every answer token ahead by a margin, so greedy answers survive the small numeric differences between
transformers versions.

Only full training teaches this: tiny has never written a colour word, so a frozen or LoRA-adapted LLM stays near
chance. The recipe depends on tiny only through its weights (the starting point) and tokenizer: a rebuilt tiny
rebuilds tiny-vl, and the stopping rule (held-out exactness, checked every `check_every` steps) holds whatever the
starting point.

The folder is written in the transformers 4.x layout (keys `language_model.model.*`, `vision_tower.vision_model.*`,
`multi_modal_projector.*`; a CLIPImageProcessor `preprocessor_config.json`; a LlavaProcessor `processor_config.json`
with the patch size; a chat template that writes `<image>\\n` for image parts), which transformers 4.48 (xtuner env),
4.57 (opencompass env) and 5.x (core) load with the same logits (tests/multimodal). A folder saved by transformers 5
would load in 4.x with a random vision tower and no error. Builds are deterministic on one machine, built in a
temporary sibling and marked complete last (camp.runtime.markers), cached, and rebuilt when the recipe or tiny change.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

from camp.multimodal import scenes
from camp.runtime import config, markers
from camp.runtime.errors import CampError
from camp.runtime.markers import sha256_file as _sha256_file

NAME = "tiny-vl"
KIND = "tiny-vl"
IMAGE_TOKEN = "<image>"
RECIPE_VERSION = 1

# CLIP's own normalisation (what every LLaVA's image processor uses)
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

RECIPE = {
    "version": RECIPE_VERSION,
    "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": scenes.SIZE, "patch_size": 8},
    # the last encoder layer's patch features (no CLS) go to the projector; XTuner's LLaVA reads the same layer
    "feature_layer": -1,
    # AdamW on every weight, cosine to 10% over `steps`; a fresh batch of generated pictures every step
    "train": {"seed": 2024, "batch": 32, "lr": 3e-3, "steps": 900, "warmup": 30},
    # stop once `held_out` new pictures × all five questions are exact (greedy = teacher-forced argmax) with every
    # answer token ahead by `margin` logits, checked every `check_every` steps; at the end of the schedule at least
    # `accept` of them must be exact (measured: ~99% from step 500, then the margins grow as the rate decays)
    "check": {"seed": 777, "held_out": 100, "check_every": 50, "margin": 0.5, "accept": 0.99},
}


def default_dir() -> Path:
    return config.models_dir() / NAME


def recipe_sha256() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()


def _tiny_sha256(tiny_dir: Path) -> str:
    return _sha256_file(Path(tiny_dir) / "model.safetensors")


FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "preprocessor_config.json", "processor_config.json", "chat_template.json"]


def is_complete(path: Path, tiny_dir: Path | None = None) -> bool:
    """A finished build of this recipe, from the current tiny (when tiny is built), with its weights intact."""
    path = Path(path)
    if not markers.is_complete(path, KIND, recipe_sha256=recipe_sha256()):
        return False
    data = markers.read(path) or {}
    if data.get("weights_sha256") != _sha256_file(path / "model.safetensors"):
        return False
    from camp.models import tiny

    tiny_dir = Path(tiny_dir) if tiny_dir else tiny.default_dir()
    if tiny.is_complete(tiny_dir) and data.get("tiny_sha256") != _tiny_sha256(tiny_dir):
        return False  # tiny was rebuilt: so is tiny-vl
    return True


def ensure(force: bool = False) -> Path:
    """The cached tiny-vl folder; built (tiny first, if needed) when missing, stale or half-written."""
    return build(default_dir(), force=force)


def build(out: Path | None = None, *, force: bool = False, progress: bool = True) -> Path:
    from camp.models import tiny

    out = Path(out).expanduser().absolute() if out is not None else default_dir()
    tiny_dir = tiny.ensure()
    if not force and is_complete(out, tiny_dir):
        return out
    with config.file_lock(out.parent / f".{out.name}.lock"):
        if not force and is_complete(out, tiny_dir):  # built by another process meanwhile
            return out
        with markers.building(out, replace=True) as tmp:
            info = _build_into(tmp, tiny_dir, progress=progress)
            markers.mark(tmp, KIND, name=NAME, recipe=RECIPE_VERSION, recipe_sha256=recipe_sha256(), **info)
    return out


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"tiny-vl: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the files
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def n_image_tokens() -> int:
    v = RECIPE["vision"]
    return (v["image_size"] // v["patch_size"]) ** 2


def _configs(tiny_dir: Path, image_id: int) -> dict[str, dict]:
    text = json.loads((tiny_dir / "config.json").read_text(encoding="utf-8"))
    text["vocab_size"] = image_id + 1
    text.pop("architectures", None)
    text.pop("torch_dtype", None)
    v = RECIPE["vision"]
    vision = {"model_type": "clip_vision_model", **v, "num_channels": 3, "hidden_act": "quick_gelu",
              "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "initializer_range": 0.02,
              "initializer_factor": 1.0, "projection_dim": v["hidden_size"]}
    cfg = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
           "image_token_index": image_id, "image_seq_length": n_image_tokens(),
           "projector_hidden_act": "gelu", "multimodal_projector_bias": True,
           "vision_feature_layer": RECIPE["feature_layer"], "vision_feature_select_strategy": "default",
           "tie_word_embeddings": False, "torch_dtype": "float32",
           "pad_token_id": text["pad_token_id"], "text_config": text, "vision_config": vision}
    gen = json.loads((tiny_dir / "generation_config.json").read_text(encoding="utf-8"))
    proc = {"processor_class": "LlavaProcessor", "patch_size": v["patch_size"], "image_token": IMAGE_TOKEN,
            "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}
    return {"config.json": cfg, "generation_config.json": gen, "preprocessor_config.json": preprocessor_config(),
            "processor_config.json": proc, "chat_template.json": {"chat_template": CHAT_TEMPLATE}}


def preprocessor_config() -> dict:
    """CLIPImageProcessor settings at the tower's size (4.x and 5.x both read this file)."""
    size = RECIPE["vision"]["image_size"]
    return {"image_processor_type": "CLIPImageProcessor", "processor_class": "LlavaProcessor",
            "do_resize": True, "size": {"shortest_edge": size}, "resample": 3,
            "do_center_crop": True, "crop_size": {"height": size, "width": size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": MEAN, "image_std": STD, "do_convert_rgb": True}


def _write_tokenizer(tiny_dir: Path, out: Path) -> int:
    """tiny's tokenizer plus <image> as a special token (the next id); returns that id."""
    from tokenizers import AddedToken, Tokenizer, processors

    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    image_id = tok.get_vocab_size(with_added_tokens=True)
    tok.add_special_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    if tok.token_to_id(IMAGE_TOKEN) != image_id:
        raise CampError(f"tiny-vl: {IMAGE_TOKEN} got id {tok.token_to_id(IMAGE_TOKEN)}, expected {image_id}")
    # The chat template writes <s> itself. tiny's tokenizer also puts <s> before any text it encodes, so a processor
    # that renders the template and then tokenizes it (4.x, and transformers 5 with tokenize=False) would start with
    # two; `transformers serve` and XTuner start with one. No automatic <s>: every path sees the same ids.
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
    (out / "tokenizer.json").write_text(tok.to_str(pretty=True), encoding="utf-8")
    tcfg = json.loads((tiny_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tcfg["added_tokens_decoder"][str(image_id)] = {"content": IMAGE_TOKEN, "lstrip": False, "normalized": False,
                                                   "rstrip": False, "single_word": False, "special": True}
    tcfg["additional_special_tokens"] = [*tcfg.get("additional_special_tokens", []), IMAGE_TOKEN]
    tcfg["chat_template"] = CHAT_TEMPLATE
    tcfg["image_token"] = IMAGE_TOKEN
    tcfg["processor_class"] = "LlavaProcessor"
    smap = json.loads((tiny_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    smap["additional_special_tokens"] = [*smap.get("additional_special_tokens", []), IMAGE_TOKEN]
    _write_json(out / "tokenizer_config.json", tcfg)
    _write_json(out / "special_tokens_map.json", smap)
    return image_id


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# 4.x key layout ← transformers 5's module names (LlavaForConditionalGeneration.model.* + lm_head)
def to_v4_keys(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if k.startswith("model.language_model."):
            k = "language_model.model." + k[len("model.language_model."):]
        elif k == "lm_head.weight":
            k = "language_model.lm_head.weight"
        elif k.startswith("model.vision_tower."):
            rest = k[len("model.vision_tower."):]
            k = "vision_tower." + (rest if rest.startswith("vision_model.") else "vision_model." + rest)
        elif k.startswith("model.multi_modal_projector."):
            k = "multi_modal_projector." + k[len("model.multi_modal_projector."):]
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------ training
def pixel_values(arrays):
    """(N, 3, H, W) float tensor from uint8 (H, W, 3) arrays already at the tower's size: what the folder's
    CLIPImageProcessor gives for them (resize and crop are no-ops at that size; a test checks)."""
    import numpy as np
    import torch

    a = torch.from_numpy(np.stack(arrays)).float().div_(255.0)
    a = (a - torch.tensor(MEAN)) / torch.tensor(STD)
    return a.permute(0, 3, 1, 2).contiguous()


class Encoder:
    """Prompt and answer ids exactly as the processor makes them at inference (the placeholder expanded)."""

    def __init__(self, tokenizer, image_id: int):
        self.tok, self.image_id, self.cache = tokenizer, image_id, {}

    def prompt(self, question: str) -> list[int]:
        if question not in self.cache:
            text = self.tok.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
                add_generation_prompt=True, tokenize=False)
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            k = ids.index(self.image_id)
            self.cache[question] = ids[:k] + [self.image_id] * n_image_tokens() + ids[k + 1 :]
        return self.cache[question]

    def answer(self, answer: str) -> list[int]:
        key = ("a", answer)
        if key not in self.cache:
            self.cache[key] = self.tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        return self.cache[key]

    def batch(self, rows, pad_id: int):
        """rows: (image array, question, answer) → input_ids, attention_mask, pixel_values, target mask."""
        import torch

        seqs = [(self.prompt(q), self.answer(a)) for _, q, a in rows]
        length = max(len(p) + len(a) for p, a in seqs)
        ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        target = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, (p, a) in enumerate(seqs):
            ids[i, : len(p) + len(a)] = torch.tensor(p + a)
            mask[i, : len(p) + len(a)] = 1
            target[i, len(p) : len(p) + len(a)] = True
        return ids, mask, pixel_values([r[0] for r in rows]), target


def answer_stats(model, batch) -> tuple:
    """(loss, per-row exact, smallest margin) with teacher forcing: a row is exact when every answer token is the
    argmax given the right prefix — exactly when greedy decoding writes the answer and stops."""
    import torch
    import torch.nn.functional as F

    ids, mask, pix, target = batch
    logits = model(input_ids=ids, attention_mask=mask, pixel_values=pix).logits[:, :-1]
    want = ids[:, 1:]
    where = target[:, 1:]
    picked = logits[where]
    goal = want[where]
    loss = F.cross_entropy(picked, goal)
    with torch.no_grad():
        right = picked.gather(1, goal[:, None]).squeeze(1)
        other = picked.scatter(1, goal[:, None], float("-inf")).max(1).values
        ok = torch.zeros_like(where)
        ok[where] = right > other
        exact = (ok | ~where).all(1)
        margin = float((right - other).min())
    return loss, exact, margin


def _held_out(enc, pad_id):
    c = RECIPE["check"]
    rows = [(sc.image(), q, a) for sc in scenes.scenes(c["held_out"], c["seed"]) for q, a in scenes.colour_questions(sc)]
    return [enc.batch(rows[i : i + 200], pad_id) for i in range(0, len(rows), 200)]


def _build_into(out: Path, tiny_dir: Path, *, progress: bool) -> dict:
    t0 = time.perf_counter()
    try:
        import torch
        from safetensors.torch import load_file, save_file
        from transformers import LlavaConfig, LlavaForConditionalGeneration, PreTrainedTokenizerFast
    except ImportError as exc:
        raise CampError(f"building tiny-vl needs torch and transformers ({exc}) — run camp from the core "
                        "environment (`make setup` creates it)") from None
    image_id = _write_tokenizer(tiny_dir, out)
    files = _configs(tiny_dir, image_id)
    for name, obj in files.items():
        _write_json(out / name, obj)
    tok = PreTrainedTokenizerFast.from_pretrained(str(out))
    tok.chat_template = CHAT_TEMPLATE
    pad_id = files["config.json"]["pad_token_id"]

    rec = RECIPE["train"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and, on 2 cores, faster for a model this small
    try:
        torch.manual_seed(rec["seed"])
        model = LlavaForConditionalGeneration(LlavaConfig.from_dict(files["config.json"]))
        # the language model starts as tiny (plus one row for <image>: its embedding is never read, the image
        # features take its place)
        tiny_w = load_file(str(tiny_dir / "model.safetensors"))
        lm = model.model.language_model
        with torch.no_grad():
            for k, v in tiny_w.items():
                if k == "lm_head.weight":
                    model.lm_head.weight[: v.shape[0]].copy_(v)
                    model.lm_head.weight[v.shape[0] :].fill_(0.0)
                else:
                    name = k[len("model."):]
                    param = lm.get_parameter(name)
                    param[: v.shape[0]].copy_(v) if name == "embed_tokens.weight" else param.copy_(v)
        n_params = sum(p.numel() for p in model.parameters())
        _say(progress, f"training {n_params:,} parameters (tiny + a {RECIPE['vision']['hidden_size']}-dim CLIP "
                       f"tower + projector) on generated pictures, until {RECIPE['check']['held_out']} new ones "
                       "are answered exactly")
        enc = Encoder(tok, image_id)
        held = _held_out(enc, pad_id)
        opt = torch.optim.AdamW(model.parameters(), lr=rec["lr"], betas=(0.9, 0.98), weight_decay=0.0)
        rng = random.Random(rec["seed"])

        def lr_at(step):
            if step < rec["warmup"]:
                return rec["lr"] * (step + 1) / rec["warmup"]
            frac = (step - rec["warmup"]) / max(1, rec["steps"] - rec["warmup"])
            return rec["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

        exact, margin, step = 0.0, float("-inf"), 0
        model.train()
        while step < rec["steps"]:
            rows = []
            for _ in range(rec["batch"]):
                sc = scenes.scene(rng)
                q, a = rng.choice(scenes.colour_questions(sc))
                rows.append((sc.image(), q, a))
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = answer_stats(model, enc.batch(rows, pad_id))[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % RECIPE["check"]["check_every"] == 0:
                exact, margin = _evaluate(model, held)
                if step % (4 * RECIPE["check"]["check_every"]) == 0 or exact == 1.0:
                    _say(progress, f"step {step}: loss {loss.item():.3f}, held-out answers exact {exact:.1%}, "
                                   f"smallest margin {margin:.2f}")
                if exact == 1.0 and margin >= RECIPE["check"]["margin"]:
                    break
        if exact < RECIPE["check"]["accept"]:
            raise CampError(f"tiny-vl: after {step} steps held-out answers are {exact:.1%} exact (margin "
                            f"{margin:.2f}); the recipe did not converge — report this with `camp doctor`'s output")
        state = {k: v.detach().contiguous().clone() for k, v in to_v4_keys(model.state_dict()).items()}
    finally:
        torch.set_num_threads(before)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    seconds = round(time.perf_counter() - t0, 2)
    _say(progress, f"built in {seconds:.1f} s ({step} steps)")
    import transformers

    return {"tiny_sha256": _tiny_sha256(tiny_dir), "weights_sha256": _sha256_file(out / "model.safetensors"),
            "image_token_id": image_id, "parameters": n_params, "steps": step, "held_out_exact": exact,
            "held_out": RECIPE["check"]["held_out"] * len(scenes.colour_questions(scenes.scenes(1, 0)[0])), "min_margin": round(margin, 3), "build_seconds": seconds,
            "built_with": {"torch": torch.__version__, "transformers": transformers.__version__}}


def _evaluate(model, held) -> tuple[float, float]:
    import torch

    model.eval()
    n = ok = 0
    margin = float("inf")
    with torch.no_grad():
        for batch in held:
            _, exact, m = answer_stats(model, batch)
            n += len(exact)
            ok += int(exact.sum())
            margin = min(margin, m)
    model.train()
    return ok / n, margin


# ------------------------------------------------------------------------------------------ CLI
def cli_tiny_vl(args) -> int:
    force = bool(getattr(args, "force", False))
    path = build(default_dir(), force=force)
    data = markers.read(path) or {}
    print(path)
    print(f"built in {data.get('build_seconds', 0):.1f} s, {data.get('steps')} steps; held-out answers exact "
          f"{data.get('held_out_exact', 0):.1%} of {data.get('held_out')}")
    return 0
