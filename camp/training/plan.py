"""The fine-tuning planner: full / LoRA / QLoRA and their settings for XTuner, with predicted peak GPU memory.

`plan(model, dataset, profile)` picks the method, dtype, micro-batch, gradient accumulation, max_length, gradient
checkpointing and DeepSpeed stage, and predicts the peak memory per GPU part by part. A plan that cannot fit is
refused with `PlanError`: which part is too big, and the nearest plan that does fit.

THE FORMULA (bytes per GPU; P = parameters, L = layers, h = hidden size, i = MLP width, a = attention heads,
V = vocabulary, s = max_length, b = micro-batch, N = GPUs sharing a ZeRO stage)

What XTuner 0.2.0 actually does decides the numbers (read in its source, checked in this repo's xtuner env):
  * LoRA and QLoRA go through peft's `prepare_model_for_kbit_training`, which casts EVERY fp16/bf16 parameter
    that is not 4-bit to fp32. A bf16 Llama given to `SupervisedFinetune(lora=…)` comes out all fp32 (measured).
    So without DeepSpeed the frozen weights cost 4 bytes each, not 2.
  * With `--deepspeed`, DeepSpeed casts the whole module to bf16/fp16 (its `module.bfloat16()`), so frozen weights
    cost 2 bytes; but ZeRO-1/2 allocate two gradient buckets of `reduce_bucket_size` = 5e8 elements (XTuner's
    deepspeed_zero{1,2}.json set `overlap_comm`, which double-buffers them): 2 × 5e8 × 2 B = 2.0 GB per GPU.
    So DeepSpeed on one GPU pays off only when it saves more than that (LoRA of a 7B model, not QLoRA).
  * LoRA targets (`find_all_linear_names`): every nn.Linear except one named `lm_head` or `output_layer`. On the
    Llama layout camp trains (InternLM2 checkpoints are normalised to it, see camp.internlm2) that is
    q/k/v/o/gate/up/down. On the original InternLM2 remote code it is wqkv/wo/w1/w3/w2 AND the head, which is
    named `output` and so is not excluded.

Weights (frozen base model)
  fp32 4 B/param, bf16/fp16 2 B/param, NF4 (QLoRA) 0.5 B + double-quantised constants 0.127 bit
  (Dettmers et al. 2023, QLoRA §3) = 0.516 B/param for the linear layers; embeddings, head and norms stay in
  float (4 B without DeepSpeed, see above). Vision towers of multimodal models count as frozen float weights.
Adapters (trainable LoRA parameters)   A = Σ over targeted linears of r × (d_in + d_out), per layer × L
  (+ r × (h + V) when the head is targeted). Without DeepSpeed: fp32 weights 4 B + fp32 grads 4 B + AdamW
  moments 8 B = 16 B per trainable parameter. With DeepSpeed: 16-bit copy 2 B + 16-bit grads 2 B + fp32 master
  and moments 12 B = 16 B, the 12 B (and from ZeRO-2 the grads) divided by N.
Full fine-tuning   16 B/param (XTuner docs, acceleration/deepspeed.rst: "每增加 1B 参数，需要增加 16GB 的显存"):
  no DeepSpeed: fp32 weights 4 + fp32 grads 4 + AdamW 8 (XTuner's full configs load fp32 and autocast);
  DeepSpeed: weights 2 + grads 2 + fp32 master & moments 12, per GPU ZeRO-1 4P + 12P/N, ZeRO-2 2P + 14P/N,
  ZeRO-3 16P/N (the same doc's formulas; 7B on 8 GPUs: 38.5 / 26.25 / 14 GB).
Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1:
  a GPT layer stores s·b·h·(34 + 5·a·s/h) bytes with 16-bit activations: attention 11·sbh + 5·a·s²·b,
  MLP 19·sbh, two LayerNorms 4·sbh). The same bookkeeping for a Llama/InternLM2 layer (no dropout, RMSNorm,
  gated MLP of width i) gives s·b·(16·h + 8·i) bytes: attention 10·sbh, norms 4·sbh, MLP input 2·sbh plus
  gate and up outputs, the activation and their product, 2·sbi each. The 5·a·s²·b attention-matrix term applies
  to eager attention only; SDPA/flash kernels keep O(s) (camp's Llama layout runs SDPA in transformers 4.48).
  Without checkpointing all L layers are stored; with full checkpointing (XTuner's default) each layer keeps only
  its input, s·b·h × 4 B (the residual stream is fp32 once the embeddings are fp32; 2 B under DeepSpeed) and one
  layer is recomputed at a time during backward.
  The loss end: b·s·V × 18 B — the head output cast to fp32 (4), the shifted copy (4), log-softmax (4), two fp32
  gradients (4 + 4) and the 16-bit head output/gradient (2); +4 B when the head carries an adapter (its output and
  the sum, 16-bit). With the other terms this reproduces XTuner's own quickstart log within 1% (tests/test_plan.py).
Overhead   GPU: 0.15 GiB (cuBLAS workspaces, bitsandbytes buffers) + 2% of the rest (allocator fragmentation);
  CPU: 1 GiB for the Python/torch/XTuner process itself.
Budget   GPU: the smallest GPU's TOTAL memory minus the CUDA context and a safety margin, 0.5 GiB + 2%;
  CPU: available RAM minus 1 GiB.

Reading a measurement against a plan: `total − overhead` compares with torch.cuda.max_memory_allocated(), which
is what XTuner/mmengine log as `memory:` (MiB); nvidia-smi shows more (the CUDA context, the allocator's cache).
The optimizer step briefly adds a fp32 copy of each GPU's gradient shard under DeepSpeed; activations are freed
by then, so it is not the peak for the settings planned here.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from camp.runtime import hardware
from camp.runtime.errors import CampError

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit NF4 + double-quantised block constants (QLoRA paper)
LOGIT_BYTES = 18  # per token per vocabulary entry at the loss (see the docstring)
HEAD_ADAPTER_LOGIT_BYTES = 4  # extra when the head carries a LoRA adapter (original InternLM2 layout)
DS_BUCKET_ELEMENTS = 5e8  # DeepSpeed's default reduce_bucket_size (XTuner's JSONs keep it)
GPU_OVERHEAD_GIB = 0.15
GPU_OVERHEAD_FRACTION = 0.02
CPU_OVERHEAD_GIB = 1.0
CUDA_MARGIN_GIB = 0.5
CUDA_MARGIN_FRACTION = 0.02
CPU_MARGIN_GIB = 1.0

EFFECTIVE_BATCH = 16  # XTuner's configs: batch 1 × accumulative_counts 16
TOKENS_PER_BATCH = 2048  # tokens per micro-batch the planner aims for (XTuner: one packed 2048-token sequence)
COMFORT = 0.85  # a plan without checkpointing, or a full fine-tune chosen automatically, must leave this headroom
SMALL_MODEL = 1e9  # "auto" considers full fine-tuning only below this many parameters
DEFAULT_MAX_LENGTH = {"cuda": 2048, "cpu": 256}
MIN_MAX_LENGTH = 256
PARTS = ("weights", "adapters", "gradients", "optimizer", "activations", "overhead")
METHOD_TITLE = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}
_CHEAPER = {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}
ZERO_STAGE = {None: 0, "zero1": 1, "zero2": 2, "zero3": 3}


# ---------------------------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Arch:
    """What the formula needs from a model's config.json (for multimodal models: its language model)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    total_params: int = 0  # the whole model (vision tower included) when known; 0 = the language model alone
    layout: str = "llama"  # "llama" (q/k/v/o/gate/up/down, head lm_head) | "internlm2" (wqkv/wo/w1/w3/w2, head output)
    name: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, d_in, d_out) of the linear layers in one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.layout == "internlm2":
            return [("wqkv", h, q + 2 * kv), ("wo", q, h), ("w1", h, i), ("w3", h, i), ("w2", i, h)]
        return [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h),
                ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]

    @property
    def linear_params(self) -> int:
        return self.num_layers * sum(a * b for _, a, b in self.linears())

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def llm_params(self) -> int:
        norms = (2 * self.num_layers + 1) * self.hidden_size
        return self.linear_params + self.embedding_params + norms

    @property
    def params(self) -> int:
        return max(self.total_params, self.llm_params)

    @property
    def head_targeted(self) -> bool:
        """XTuner puts LoRA on the head only when it is not called lm_head (the InternLM2 remote-code `output`)."""
        return self.layout == "internlm2"

    def layer_params(self) -> int:
        return self.linear_params // self.num_layers


def lora_params(arch: Arch, r: int) -> int:
    """Trainable parameters of XTuner's default LoRA (every linear layer but an `lm_head`)."""
    n = arch.num_layers * sum(r * (a + b) for _, a, b in arch.linears())
    if arch.head_targeted:
        n += r * (arch.hidden_size + arch.vocab_size)
    return n


def model_states(params: float, deepspeed: str | None = None, num_gpus: int = 1) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per GPU of FULL fine-tuning with AdamW, 16 bytes/param in all."""
    if not deepspeed:
        return 4.0 * params, 4.0 * params, 8.0 * params
    stage, n = ZERO_STAGE[deepspeed], max(1, num_gpus)
    return (2.0 * params / (n if stage >= 3 else 1), 2.0 * params / (n if stage >= 2 else 1),
            12.0 * params / (n if stage >= 1 else 1))


def _ds_buffers(arch: Arch, deepspeed: str | None, half: int) -> float:
    """Gradient buckets DeepSpeed allocates on every GPU (defaults kept by XTuner's JSON files)."""
    stage = ZERO_STAGE[deepspeed]
    if stage in (1, 2):
        return 2 * DS_BUCKET_ELEMENTS * half  # double-buffered because overlap_comm is on
    if stage == 3:  # one bucket plus the gathered parameters of the biggest module and the prefetched next one
        biggest = max(arch.vocab_size * arch.hidden_size, arch.layer_params())
        return DS_BUCKET_ELEMENTS * half + 2 * biggest * half
    return 0.0


def estimate(arch: Arch, *, method: str = "lora", dtype: str = "bfloat16", batch_size: int = 1,
             max_length: int = 2048, grad_checkpointing: bool = True, deepspeed: str | None = None,
             num_gpus: int = 1, lora_r: int = 64, device: str = "cuda", frozen_dtype: str | None = None,
             attention: str = "sdpa") -> dict[str, float]:
    """Peak memory per GPU in GiB, part by part (see the module docstring). `frozen_dtype` None = what XTuner
    does (fp32 without DeepSpeed, the compute dtype with it); give one to model other trainers."""
    if method not in METHOD_TITLE:
        raise CampError(f"unknown method {method!r} — use full, lora or qlora")
    for value in (dtype, frozen_dtype or dtype):
        if value not in DTYPE_BYTES:
            raise CampError(f"unknown dtype {value!r} — use one of {', '.join(DTYPE_BYTES)}")
    gpu = device == "cuda"
    half = DTYPE_BYTES[dtype] if gpu else 4
    if not gpu:
        deepspeed = None
    stage = ZERO_STAGE[deepspeed]
    n = max(1, num_gpus) if stage else 1
    P = arch.params
    if frozen_dtype is not None:
        frozen = DTYPE_BYTES[frozen_dtype]
    else:
        frozen = half if deepspeed else 4

    if method == "full":
        weights, grads, optim = model_states(P, deepspeed, n) if gpu else (4.0 * P, 4.0 * P, 8.0 * P)
        adapters = 0.0
        resid = 2 if deepspeed else 4  # the embeddings' dtype decides the residual stream's
    else:
        A = lora_params(arch, lora_r)
        quantized = arch.linear_params if method == "qlora" else 0
        floats = P - quantized
        weights = floats * frozen / (n if stage >= 3 and method == "lora" else 1) + quantized * NF4_BYTES
        if deepspeed:
            adapters = A * half / (n if stage >= 3 else 1)
            grads = A * half / (n if stage >= 2 else 1)
            optim = A * 12.0 / n
        else:
            adapters, grads, optim = 4.0 * A, 4.0 * A, 8.0 * A
            if num_gpus > 1:
                grads += 4.0 * A  # DDP's gradient buckets hold a second copy
        resid = frozen
    grads += _ds_buffers(arch, deepspeed, half)

    tokens = batch_size * max_length
    h, i, L = arch.hidden_size, arch.intermediate_size, arch.num_layers
    act_scale = half / 2  # the per-layer bookkeeping counts 16-bit activations
    per_layer = tokens * (16 * h + 8 * i) * act_scale
    if attention == "eager":
        per_layer += 5 * arch.num_heads * max_length * tokens * act_scale
    if grad_checkpointing:
        stored = L * tokens * h * resid + per_layer
    else:
        stored = L * per_layer
    head_extra = HEAD_ADAPTER_LOGIT_BYTES if (method != "full" and arch.head_targeted) else 0
    logits = tokens * arch.vocab_size * (LOGIT_BYTES + head_extra)
    activations = stored + logits

    parts = {"weights": weights, "adapters": adapters, "gradients": grads, "optimizer": optim,
             "activations": activations}
    rest = sum(parts.values())
    parts["overhead"] = (GPU_OVERHEAD_GIB * GIB + GPU_OVERHEAD_FRACTION * rest) if gpu else CPU_OVERHEAD_GIB * GIB
    out = {k: v / GIB for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


# ---------------------------------------------------------------------------------------------- model specs
@lru_cache(maxsize=4)
def _catalogue_entries(path: str) -> dict[str, dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {m["name"]: m for m in data["models"]}


def _catalogue_arch(name: str, model_arch: str) -> Arch | None:
    from camp.runtime import config

    entry = _catalogue_entries(str(config.assets_dir() / "models.json")).get(name)
    if not entry or "hidden_size" not in entry:
        return None
    # camp normalises InternLM2 text checkpoints to the Llama layout; multimodal ones keep their remote code
    layout = "internlm2" if model_arch in ("internlm-xcomposer2", "internvl2") else "llama"
    return Arch(hidden_size=entry["hidden_size"], num_layers=entry["num_layers"], num_heads=entry["num_heads"],
                num_kv_heads=entry["num_kv_heads"], intermediate_size=entry["intermediate_size"],
                vocab_size=entry["vocab_size"],
                max_position_embeddings=entry.get("max_position_embeddings", 32768),
                tie_word_embeddings=bool(entry.get("tie_word_embeddings", False)),
                total_params=int(round(float(entry.get("params", 0)) * 1e9)), layout=layout, name=name)


def arch_from_config(folder: str | os.PathLike) -> Arch:
    """The Arch of a local model folder, from its config.json (Llama, InternLM2, or a multimodal wrapper)."""
    folder = Path(folder)
    cfg_file = folder / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CampError(f"cannot read {cfg_file} ({exc}) — give a model folder with a config.json") from exc
    layout = "llama"
    model_type = str(cfg.get("model_type", ""))
    for key in ("llm_config", "text_config", "language_config"):
        if isinstance(cfg.get(key), dict) and "hidden_size" in cfg[key]:
            inner = cfg[key]
            if inner.get("model_type") == "internlm2":
                layout = "internlm2"  # vision models keep their remote code (not normalised)
            cfg = {**inner, "tie_word_embeddings": inner.get("tie_word_embeddings", False)}
            break
    else:
        if model_type.startswith("internlmxcomposer"):
            layout = "internlm2"
    try:
        h = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        arch = Arch(hidden_size=h, num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
                    num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                    intermediate_size=int(cfg.get("intermediate_size") or 4 * h),
                    vocab_size=int(cfg["vocab_size"]),
                    max_position_embeddings=int(cfg.get("max_position_embeddings") or 32768),
                    tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)), layout=layout,
                    name=folder.name)
    except (KeyError, TypeError, ValueError) as exc:
        raise CampError(f"{cfg_file} lacks the decoder sizes the planner needs ({exc}) — is this a causal "
                        "language model?") from exc
    return arch


def model_arch(model, profile=None) -> Arch:
    """The Arch for a catalogue name/alias/id, a local folder, or a camp.models.Model (no network)."""
    from camp import models

    if isinstance(model, models.Model):
        m = model
    else:
        s = os.fspath(model).strip() if isinstance(model, os.PathLike) else str(model or "auto").strip()
        if s.lower() == "auto":
            s = hardware.profile(profile).default_model
        p = Path(s).expanduser()
        try:
            m = models.get(s)
        except CampError:
            if p.is_dir():
                return arch_from_config(p)
            raise
    arch = _catalogue_arch(m.name, m.arch)
    if arch is not None:
        return arch
    folder = models.find_local(m) if m.ids else None
    if folder is not None:
        return replace(arch_from_config(folder), name=m.name,
                       total_params=int(round(m.params * 1e9)))
    raise CampError(f"the planner does not know the architecture of {m.name!r} — pass its local folder (with "
                    "config.json) instead")


# ---------------------------------------------------------------------------------------------- dataset length
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
TEMPLATE_TOKENS_PER_TURN = 8  # <|im_start|>role\n … <|im_end|>\n
TOKEN_SAFETY = 1.1


def _texts(obj, out: list[str]) -> int:
    """Collect string leaves; return how many message-like dicts were seen (for the template overhead)."""
    turns = 0
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        turns += 1
        for v in obj.values():
            turns += _texts(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            turns += _texts(v, out)
    return turns


def approx_tokens(record) -> int:
    """Token count of one dataset record, without a tokenizer: ~1 token per CJK character, ~1 per 3 other
    characters (InternLM2's tokenizer does better on both), plus the chat template's tokens per turn."""
    texts: list[str] = []
    turns = _texts(record, texts)
    text = "".join(texts)
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3) + TEMPLATE_TOKENS_PER_TURN * max(1, turns)


def _read_records(dataset) -> tuple[list, str]:
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise CampError(f"dataset {path} does not exist — give a .jsonl/.json file or a list of records")
        text = path.read_text(encoding="utf-8")
        label = str(path)
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise CampError(f"{path} is not valid JSON ({exc}) — check it with `camp data check`") from exc
            records = data if isinstance(data, list) else data.get("data", []) if isinstance(data, dict) else []
        else:
            records = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError as exc:
                        raise CampError(f"{path}:{n} is not valid JSON ({exc}) — check the file with "
                                        "`camp data check`") from exc
        return records, label
    if isinstance(dataset, (list, tuple)):
        return list(dataset), "the records"
    raise CampError(f"dataset must be a file path or a list of records, not {type(dataset).__name__}")


def _tokenizer_counter(folder):
    """A record → token count function using the model folder's tokenizer.json, or None (no folder/file)."""
    if folder is None or not (Path(folder) / "tokenizer.json").is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    except Exception:  # noqa: BLE001 — an unreadable tokenizer falls back to the estimate
        return None

    def count(record) -> int:
        texts: list[str] = []
        turns = _texts(record, texts)
        ids = tok.encode_batch(texts, add_special_tokens=False) if texts else []
        return sum(len(e.ids) for e in ids) + TEMPLATE_TOKENS_PER_TURN * max(1, turns)

    return count


def _local_folder(model) -> Path | None:
    """The model's folder if it is on this machine already (its tokenizer then counts the tokens)."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    from camp import models

    return models.local_folder(str(model))


def max_length_for(dataset, context: int, tokenizer_dir=None) -> tuple[int, str]:
    """(max_length, note): the longest example's tokens × 1.1, rounded up to 64, capped at context. Tokens are
    counted with the model's own tokenizer when `tokenizer_dir` has one (a byte-level tokenizer spends several
    tokens per Chinese character), else estimated from characters (before a hub model is downloaded)."""
    records, label = _read_records(dataset)
    if not records:
        raise CampError(f"{label} holds no records — build a dataset first (camp data self-cognition …)")
    count = _tokenizer_counter(tokenizer_dir)
    longest = max((count or approx_tokens)(r) for r in records)
    length = max(64, math.ceil(longest * TOKEN_SAFETY / 64) * 64)
    how = "tokens by the model's tokenizer" if count else "tokens, estimated"
    note = f"max_length {min(length, context)} from the longest of {len(records)} examples ({longest} {how})"
    if length > context:
        note += f"; capped at the model's context {context}"
    return min(length, context), note


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    model: str
    method: str
    dtype: str
    batch_size: int
    grad_accum: int
    max_length: int
    grad_checkpointing: bool
    deepspeed: str | None
    num_gpus: int
    lora_r: int
    lora_alpha: int
    optimizer: str
    device: str
    memory: dict
    budget_gib: float
    fits: bool
    notes: list = field(default_factory=list)
    profile: str = ""
    params: int = 0
    trainable_params: int = 0
    explain: dict = field(default_factory=dict)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum * max(1, self.num_gpus)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["effective_batch"] = self.effective_batch
        return d

    def deepspeed_config(self) -> dict | None:
        """The DeepSpeed JSON this plan's memory assumes (XTuner's deepspeed_zeroN.json with the bucket sizes
        spelled out), or None. Write it to the run folder and pass its path to `xtuner train --deepspeed`."""
        if not self.deepspeed:
            return None
        stage = ZERO_STAGE[self.deepspeed]
        zero = {"stage": stage, "overlap_comm": True, "reduce_bucket_size": int(DS_BUCKET_ELEMENTS)}
        if stage < 3:
            zero["allgather_bucket_size"] = int(DS_BUCKET_ELEMENTS)
        else:
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        return {"gradient_accumulation_steps": "auto", "train_micro_batch_size_per_gpu": "auto",
                "gradient_clipping": "auto", "zero_allow_untested_optimizer": True,
                "zero_force_ds_cpu_optimizer": False, "zero_optimization": zero,
                "fp16": {"enabled": self.dtype == "float16", "initial_scale_power": 16},
                "bf16": {"enabled": self.dtype == "bfloat16"}}

    def headline(self) -> str:
        """One line: method and settings."""
        m = METHOD_TITLE[self.method]
        if self.method != "full":
            m += f" r={self.lora_r} alpha={self.lora_alpha}"
        gpus = "CPU" if self.device == "cpu" else f"{self.num_gpus} GPU" + ("s" if self.num_gpus > 1 else "")
        ds = f"DeepSpeed {zero_title(self.deepspeed)}" if self.deepspeed else "no DeepSpeed"
        ckpt = "gradient checkpointing" if self.grad_checkpointing else "no gradient checkpointing"
        return (f"{m} · {self.dtype} · {self.optimizer} · max_length {self.max_length} · batch {self.batch_size}"
                f" × accum {self.grad_accum}" + (f" × {self.num_gpus} GPUs" if self.num_gpus > 1 else "")
                + f" = {self.effective_batch} · {ckpt} · {ds} · {gpus}")

    def __str__(self) -> str:
        verdict = "fits" if self.fits else "DOES NOT FIT"
        total = self.memory["total"]
        lines = [f"Fine-tuning plan for {self.model} on {self.profile or self.device} "
                 f"({'RAM' if self.device == 'cpu' else 'per GPU'} budget {self.budget_gib:.1f} GiB)",
                 "  " + self.headline(),
                 f"  {'part':<12}{'GiB':>8}"]
        for part in PARTS:
            v = self.memory[part]
            num = f"{v:>8.2f}" if v >= 0.01 or v == 0 else f"{v:>8.4f}"
            lines.append(f"  {part:<12}{num}   {self.explain.get(part, '')}".rstrip())
        pct = 100 * total / self.budget_gib if self.budget_gib else float("inf")
        lines.append(f"  {'total':<12}{total:>8.2f}   of {self.budget_gib:.2f} GiB → {verdict} ({pct:.0f}%)")
        if self.notes:
            lines.append("  notes:")
            lines += [f"   - {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from camp.ui.html import plan_html

        return plan_html(self)


class PlanError(CampError):
    """No plan fits: `.plan` is the refused (closest) plan, `.nearest` the nearest plan that fits or None,
    `.alternatives` further plans that fit (e.g. the same method on more or bigger GPUs)."""

    def __init__(self, message: str, plan: Plan | None = None, nearest: Plan | None = None,
                 alternatives: list | None = None):
        super().__init__(message)
        self.plan = plan
        self.nearest = nearest
        self.alternatives = list(alternatives or [])


def _count(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    return f"{n / 1e3:.0f} k"


def zero_title(ds: str | None) -> str:
    return f"ZeRO-{ZERO_STAGE[ds]}" if ds else "no DeepSpeed"


# ---------------------------------------------------------------------------------------------- hardware
@dataclass(frozen=True)
class _Hardware:
    profile: str
    device: str
    dtype: str
    num_gpus: int
    total_gib: float  # smallest GPU's total memory (or available RAM on CPU)
    budget_gib: float
    notes: tuple = ()




def _available_ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    except (ValueError, OSError, AttributeError):
        return 4.0


def gpu_budget(total_gib: float) -> float:
    """What a plan may use of a GPU with this total memory: minus the CUDA context and a safety margin."""
    return total_gib - CUDA_MARGIN_GIB - CUDA_MARGIN_FRACTION * total_gib


def _hardware(prof, num_gpus: int | None) -> _Hardware:
    from camp.runtime import hardware

    notes: list[str] = []
    if prof.device != "cuda":
        ram = _available_ram_gib()
        return _Hardware(prof.name, "cpu", "float32", 0, ram, ram - CPU_MARGIN_GIB, tuple(notes))
    gpus = prof.gpus
    if gpus and hardware.choose_profile(gpus) == prof.name:
        smallest = min(gpus, key=lambda g: g.total_mib)
        total = smallest.total_mib / 1024
        busy = [g for g in gpus if g.total_mib and g.free_mib < 0.9 * g.total_mib]
        if busy:
            g = busy[0]
            notes.append(f"GPU {g.index} has only {g.free_gib:.1f} of {g.total_gib:.1f} GiB free now: stop the "
                         "other process (LMDeploy server? another kernel?) before training")
        count = len(gpus)
    else:
        total = float(prof.memory_gb)  # planning for a profile this machine does not have: its nominal size
        count = prof.gpu_count
    n = num_gpus if num_gpus else count
    name = prof.base if n == 1 else f"{prof.base}-x{n}"
    return _Hardware(name, "cuda", prof.dtype, n, total, gpu_budget(total), tuple(notes))


def _nominal(base: str, n: int, dtype: str = "bfloat16") -> _Hardware:
    from camp.runtime.hardware import PROFILE_GB

    total = float(PROFILE_GB[base])
    return _Hardware(base if n == 1 else f"{base}-x{n}", "cuda", dtype, n, total, gpu_budget(total))


# ---------------------------------------------------------------------------------------------- building plans
@dataclass(frozen=True)
class _Workload:
    arch: Arch
    name: str
    max_length: int
    lora_r: int
    attention: str


def _build(job: _Workload, hw: _Hardware, method: str, batch: int, ckpt: bool, ds: str | None,
           max_length: int | None = None) -> Plan:
    s = max_length or job.max_length
    gpu = hw.device == "cuda"
    n = hw.num_gpus if gpu else 0
    mem = estimate(job.arch, method=method, dtype=hw.dtype, batch_size=batch, max_length=s,
                   grad_checkpointing=ckpt, deepspeed=ds, num_gpus=max(1, n), lora_r=job.lora_r,
                   device=hw.device, attention=job.attention)
    accum = max(1, math.ceil(EFFECTIVE_BATCH / (batch * max(1, n)))) if gpu else 1
    r = job.lora_r if method != "full" else 0
    return Plan(model=job.name, method=method, dtype=hw.dtype, batch_size=batch, grad_accum=accum, max_length=s,
                grad_checkpointing=ckpt, deepspeed=ds, num_gpus=n, lora_r=r, lora_alpha=max(1, r // 4) if r else 0,
                optimizer="AdamW", device=hw.device, memory=mem, budget_gib=round(hw.budget_gib, 3),
                fits=mem["total"] <= hw.budget_gib, notes=list(hw.notes), profile=hw.profile,
                params=job.arch.params,
                trainable_params=job.arch.params if method == "full" else lora_params(job.arch, job.lora_r),
                explain=_explain(job.arch, method, ds, hw, mem, s, batch, ckpt, job.lora_r))


def _explain(arch: Arch, method: str, ds, hw: _Hardware, mem: dict, s: int, b: int, ckpt: bool, r: int) -> dict:
    gpu = hw.device == "cuda"
    frozen = ("16-bit (DeepSpeed casts the model)" if ds else "fp32 (XTuner/peft upcast frozen weights)") \
        if gpu else "fp32"
    if method == "full":
        w = f"{_count(arch.params)} parameters, " + ("16-bit, fp32 master in the optimizer" if ds and gpu
                                                           else "fp32")
        a = "none: every parameter trains"
        opt = "AdamW: fp32 master copy + 2 moments" if ds and gpu else "AdamW: 2 fp32 moments"
    else:
        if method == "qlora":
            w = f"{_count(arch.linear_params)} linear in 4-bit NF4, {_count(arch.params - arch.linear_params)} {frozen}"
        else:
            w = f"{_count(arch.params)} frozen, {frozen}"
        target = "all linear layers" + (" and the head" if arch.head_targeted else "")
        a = f"{_count(lora_params(arch, r))} LoRA parameters (r={r}, {target})"
        opt = "AdamW: fp32 master copy + 2 moments" if ds and gpu else "AdamW: 2 fp32 moments"
    g = "trainable parameters' gradients"
    if ds and gpu and ZERO_STAGE[ds] in (1, 2):
        g += f" + {2 * DS_BUCKET_ELEMENTS * DTYPE_BYTES[hw.dtype] / GIB:.2f} GiB DeepSpeed buckets"
    if ds and hw.num_gpus > 1:
        g += f", sharded over {hw.num_gpus} GPUs ({zero_title(ds)})"
    elif gpu and hw.num_gpus > 1 and method != "full":
        g += " + DDP's bucket copy"
    act = f"{b} × {s} tokens, " + ("checkpointed layer inputs + one layer + the loss" if ckpt
                                   else f"all {arch.num_layers} layers + the loss")
    over = "allocator, cuBLAS workspaces" if gpu else "the Python/torch/XTuner process"
    return {"weights": w, "adapters": a, "gradients": g, "optimizer": opt, "activations": act, "overhead": over}


def _ds_options(method: str, hw: _Hardware, forced) -> list[str | None]:
    if hw.device != "cuda":
        return [None]
    if forced != "auto":
        return [forced]
    if method == "full":
        return [None] if hw.num_gpus == 1 else ["zero2", "zero3"]
    return [None, "zero2"]


def _batches(hw: _Hardware, batch_size: int | None, max_length: int) -> list[int]:
    """Micro-batches to try, biggest first: up to TOKENS_PER_BATCH tokens (XTuner packs 2048 tokens into a
    batch of 1; more per step buys little speed on a GPU and eats the margin), never more than EFFECTIVE_BATCH."""
    if batch_size:
        return [batch_size]
    if hw.device != "cuda":
        return [1]
    top = min(EFFECTIVE_BATCH, max(1, TOKENS_PER_BATCH // max_length))
    return [b for b in (16, 8, 4, 2, 1) if b <= top]


def _search(job: _Workload, hw: _Hardware, methods: list[str], *, auto: bool, batch_size: int | None,
            deepspeed="auto", max_length: int | None = None) -> Plan | None:
    """The first plan that fits, in order of preference: method, then no checkpointing (only with headroom),
    then the biggest micro-batch, then no DeepSpeed before ZeRO-2 before ZeRO-3 (the simplest that fits)."""
    gpu = hw.device == "cuda"
    for method in methods:
        if method == "qlora" and not gpu:
            continue
        for ckpt in ((False, True) if gpu else (False,)):
            for b in _batches(hw, batch_size, max_length or job.max_length):
                for ds in _ds_options(method, hw, deepspeed):
                    p = _build(job, hw, method, b, ckpt, ds, max_length)
                    comfortable = (gpu and not ckpt) or (auto and method == "full")
                    if p.memory["total"] <= hw.budget_gib * (COMFORT if comfortable else 1.0):
                        return p
    return None


def _cheapest(job: _Workload, hw: _Hardware, method: str, batch_size: int | None, deepspeed="auto") -> Plan:
    """The smallest plan of this method on this hardware: what a refusal reports."""
    gpu = hw.device == "cuda"
    b = batch_size or 1
    opts = [_build(job, hw, method, b, gpu, ds) for ds in _ds_options(method, hw, deepspeed)]
    return min(opts, key=lambda p: p.memory["total"])


def _shorter(length: int) -> list[int]:
    out, s = [], length // 2
    while s >= MIN_MAX_LENGTH:
        out.append(s)
        s //= 2
    return out


def _bigger_profiles(hw: _Hardware) -> list[str]:
    from camp.runtime.hardware import PROFILE_GB

    return [b for b in ("gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g") if PROFILE_GB[b] > hw.total_gib + 0.5]


def _nearest(job: _Workload, hw: _Hardware, requested: str, batch_size: int | None, length_given: bool,
             deepspeed="auto") -> tuple[Plan | None, list[Plan]]:
    """The nearest plan that fits and alternatives that keep the requested method. Order: another (cheaper)
    method on this hardware; a shorter max_length here; more GPUs like these (full fine-tuning, ZeRO); one
    bigger GPU (the requested method first, then cheaper ones; max_length kept, then shorter)."""
    methods = ["lora", "qlora"] if requested == "auto" else [requested, *_CHEAPER[requested]]
    cheaper = [m for m in methods if m != requested]
    found: list[Plan] = []
    alternatives: list[Plan] = []

    p = _search(job, hw, cheaper, auto=requested == "auto", batch_size=batch_size, deepspeed=deepspeed)
    if p:
        found.append(p)
    for s in _shorter(job.max_length):
        p = _search(job, hw, methods, auto=requested == "auto", batch_size=batch_size, deepspeed=deepspeed,
                    max_length=s)
        if p:
            found.append(p)
            break
    if hw.device == "cuda" and (requested == "full") and hw.total_gib > 0:
        base = _base_for(hw)
        for n in (2, 4, 8):
            if n <= hw.num_gpus:
                continue
            more = replace(hw, profile=f"{base}-x{n}", num_gpus=n, notes=())
            p = _search(job, more, ["full"], auto=False, batch_size=batch_size)
            if p:
                alternatives.append(p)
                found.append(p)
                break
    bigger = _bigger_profiles(hw) if hw.device == "cuda" else ["gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g"]
    for base in bigger:
        big = _nominal(base, 1, hw.dtype if hw.device == "cuda" else "bfloat16")
        first = job.max_length
        if hw.device != "cuda" and not length_given:  # leaving the CPU: plan the GPU's default length
            first = min(DEFAULT_MAX_LENGTH["cuda"], job.arch.max_position_embeddings)
        lengths = [first] + ([] if length_given else _shorter(first))
        hit = None
        for s in lengths:
            for m in methods:
                hit = _search(job, big, [m], auto=requested == "auto", batch_size=batch_size, max_length=s)
                if hit:
                    break
            if hit:
                break
        if hit:
            found.append(hit)
            if requested != "auto" and hit.method != requested:
                # also say which bigger GPU the requested method itself needs
                for base2 in _bigger_profiles(big) + [base]:
                    same = _search(job, _nominal(base2, 1, big.dtype), [requested], auto=False,
                                   batch_size=batch_size)
                    if same:
                        alternatives.append(same)
                        break
            break
    if requested != "auto":
        alternatives += [p for p in found if p.method == requested and p not in alternatives]
    nearest = found[0] if found else None
    return nearest, [a for a in alternatives if a is not nearest]


def _base_for(hw: _Hardware) -> str:
    from camp.runtime.hardware import TIERS

    for name, min_gib in TIERS:
        if hw.total_gib >= min_gib:
            return name
    return "gpu-8g"


def _describe_change(refused: Plan, p: Plan) -> str:
    bits = []
    if p.method != refused.method:
        bits.append(f"use {METHOD_TITLE[p.method]}")
    else:
        bits.append(METHOD_TITLE[p.method])
    if p.device == "cuda" and (p.profile != refused.profile or refused.device != "cuda"):
        base = p.profile.split("-x")[0]
        size = base.replace("gpu-", "").replace("g", "")
        if p.num_gpus > 1:
            bits.append(f"on {p.num_gpus} GPUs of {size} GB with DeepSpeed {zero_title(p.deepspeed)} ({p.profile})")
        else:
            bits.append(f"on a {size} GB GPU ({p.profile})")
    if p.max_length != refused.max_length:
        bits.append(f"with max_length {p.max_length}")
    return " ".join(bits) + f" (~{p.memory['total']:.1f} of {p.budget_gib:.1f} GiB)"


def _why(p: Plan) -> str:
    big = sorted(((p.memory[k], k) for k in PARTS if k != "overhead"), reverse=True)[:2]
    parts = ", ".join(f"{k} {v:.1f} GiB" for v, k in big)
    where = "RAM" if p.device == "cpu" else f"per GPU on {p.profile}"
    return (f"{METHOD_TITLE[p.method]} of {p.model} needs ~{p.memory['total']:.1f} GiB {where}, the budget is "
            f"{p.budget_gib:.1f} GiB (largest parts: {parts}; max_length {p.max_length}, batch {p.batch_size})")


# ---------------------------------------------------------------------------------------------- plan()
def plan(model="auto", dataset=None, profile=None, *, method: str = "auto", max_length: int | None = None,
         batch_size: int | None = None, lora_r: int = 64, num_gpus: int | None = None, strict: bool = True,
         deepspeed: str | None = "auto") -> Plan:
    """The fine-tuning plan for model (catalogue name, local folder or camp.models.Model) on profile
    (None/"auto": this machine; a name like "gpu-8g"; CAMP_FAKE_GPUS simulates GPUs).

    method "auto": full fine-tuning for models under 1 B parameters when it fits comfortably, else LoRA, else
    QLoRA; on CPU, LoRA in float32 without gradient checkpointing (the XTuner CPU settings). max_length: given,
    else from the dataset's longest example, else 2048 on GPU / 256 on CPU. deepspeed: "auto" (none when the job
    fits one GPU without it, ZeRO-2 when that is what makes it fit, ZeRO-3 for full fine-tuning that needs it),
    None, or "zero1"/"zero2"/"zero3". strict: raise PlanError when nothing fits (else return the refused plan)."""
    if method not in ("auto", *METHOD_TITLE):
        raise CampError(f"unknown method {method!r} — use auto, full, lora or qlora")
    if deepspeed not in ("auto", *ZERO_STAGE):
        raise CampError(f"unknown deepspeed setting {deepspeed!r} — use auto, None, zero1, zero2 or zero3")
    if lora_r < 1:
        raise CampError(f"lora_r must be at least 1, not {lora_r}")
    if batch_size is not None and batch_size < 1:
        raise CampError(f"batch_size must be at least 1, not {batch_size}")
    prof = hardware.profile(profile)
    arch = model_arch(model, prof)
    hw = _hardware(prof, num_gpus)
    name = arch.name or str(model)
    notes: list[str] = []
    context = arch.max_position_embeddings
    length_given = max_length is not None
    if max_length is None:
        if dataset is not None:
            max_length, note = max_length_for(dataset, context, tokenizer_dir=_local_folder(model))
            notes.append(note)
        else:
            max_length = min(DEFAULT_MAX_LENGTH[hw.device], context)
    elif max_length < 16:
        raise CampError(f"max_length {max_length} is too short — give at least a few dozen tokens")
    elif max_length > context:
        notes.append(f"max_length {max_length} is longer than the model's context {context}: capped")
        max_length = context
    if length_given and dataset is not None:
        needed, _ = max_length_for(dataset, context, tokenizer_dir=_local_folder(model))
        if needed > max_length:
            notes.append(f"some examples are longer than max_length {max_length} (they need ~{needed}): XTuner "
                         "cuts them, so their ends are never trained — raise max_length or leave it to the plan")

    attention = "sdpa" if arch.layout == "llama" else "eager"
    if arch.params > 1.01 * arch.llm_params:
        notes.append(f"{(arch.params - arch.llm_params) / 1e9:.2f} B parameters beyond the language model (vision "
                     "tower) are counted as frozen weights; their activations are not modelled")
    if method != "full" and lora_r * 2 > arch.hidden_size:
        notes.append(f"lora_r={lora_r} is more than half the hidden size ({arch.hidden_size}): the adapters are "
                     "nearly as big as the layers they adapt")
    job = _Workload(arch, name, max_length, lora_r, attention)
    gpu = hw.device == "cuda"

    if method == "auto":
        methods = ["lora"] if not gpu else (["full"] if arch.params < SMALL_MODEL else []) + ["lora", "qlora"]
    else:
        methods = [method]
    if method == "qlora" and not gpu:
        refused = _build(job, hw, "qlora", batch_size or 1, False, None)
        nearest = _search(job, hw, ["lora"], auto=False, batch_size=batch_size)
        msg = ("QLoRA needs a CUDA GPU (bitsandbytes' 4-bit kernels); this is the CPU profile "
               f"{hw.profile}" + (f" — nearest plan that fits: use LoRA (~{nearest.memory['total']:.1f} GiB "
                                  "of RAM, float32)" if nearest else ""))
        refused.fits = False
        _finish(refused, notes, msg)
        if strict:
            raise PlanError(msg, refused, nearest)
        return refused

    p = _search(job, hw, methods, auto=method == "auto", batch_size=batch_size, deepspeed=deepspeed)
    if p is not None:
        _finish(p, notes)
        return p

    refused = _cheapest(job, hw, methods[-1], batch_size, deepspeed)
    nearest, alternatives = _nearest(job, hw, method, batch_size, length_given, deepspeed)
    msg = _why(refused)
    if nearest is not None:
        msg += " — nearest plan that fits: " + _describe_change(refused, nearest)
        for alt in alternatives[:2]:
            msg += f"; or {_describe_change(refused, alt)}"
    else:
        msg += " — no plan fits even on one 80 GB GPU: use several GPUs with DeepSpeed ZeRO-3 or a smaller model"
    _finish(refused, notes, msg)
    for q in [nearest, *alternatives]:
        if q is not None:
            _finish(q, notes)
    if strict:
        raise PlanError(msg, refused, nearest, alternatives)
    return refused


def _finish(p: Plan, notes: list[str], refusal: str | None = None) -> None:
    extra = list(notes)
    if refusal:
        extra.insert(0, refusal)
    if p.device == "cuda":
        extra.append("predicted peak per GPU; XTuner's log `memory:` (torch max allocated, MiB) should read about "
                     f"{(p.memory['total'] - p.memory['overhead']) * 1024:.0f}; nvidia-smi adds the CUDA context")
        if p.method == "qlora":
            extra.append("QLoRA needs bitsandbytes with CUDA in the xtuner environment")
        if p.deepspeed:
            extra.append("DeepSpeed must be installed in the xtuner environment (xtuner train --deepspeed "
                         f"deepspeed_{p.deepspeed})")
    else:
        what = "full fine-tuning" if p.method == "full" else "LoRA"
        extra.append(f"CPU settings: {what} in float32, no gradient checkpointing, no AMP (XTuner runs this way "
                     "on CPU)")
        if p.params > 1e8:
            extra.append(f"{p.params / 1e9:.1f} B parameters on a CPU train very slowly: the course uses the tiny "
                         "model here")
    p.notes = list(dict.fromkeys(p.notes + extra))
