"""The serving memory plan behind LMDeploy's flags (tp, --cache-max-entry-count, --quant-policy) and the
quantization spec. Pure functions: no GPU, no subprocess.

THE SERVING MEMORY PLAN (GiB per GPU; `plan_serving`)
    F  free memory of the smallest GPU: nvidia-smi's free memory when this machine has the profile's GPUs,
       else the profile's nominal size (gpu-24g → 24) — planning for a machine you do not have
    W  weights / tp: bf16/fp16 2 B per parameter; AWQ W4A16 0.5 B per linear-layer parameter plus an fp16 scale
       and a 4-bit zero per group of 128 (0.52 B), embeddings and head stay 2 B
    R  runtime: 0.75 GiB (CUDA context, cuBLAS/NCCL workspaces) + prefill activations of LMDeploy's default
       8192-token prefill chunk, 8192 × (4·hidden + 2·intermediate) × 2 B / tp
    H  headroom for the other processes a lesson runs on the same GPU (the notebook, an evaluation, a client):
       max(1 GiB, 10 % of F)
    KV = F − W − R − H                                  memory the KV cache may take
    cache_max_entry_count = KV / (F − W)                LMDeploy's definition: the fraction of the memory left
                                                        after the weights; rounded DOWN to 0.05, at most 0.9
    tokens = cache_max_entry_count · (F − W) / (2 · layers · kv_heads · head_dim · b / tp)
                                                        b = 2 B (fp16 KV), 1 B (--quant-policy 8), 0.5 B (4)
    tp: the smallest power of two ≤ the profile's GPU count for which KV holds at least MIN_TOKENS at fp16
    KV policy (unless asked for): 0 when tokens ≥ WANT_TOKENS (four 2k-token conversations at once), else 8,
       else 4; refused (CampError) when even int4 holds fewer than MIN_TOKENS (one 2k-token conversation).
These constants are estimates, not measurements: this kit's machines have no GPU. A TA who measures a real
slice should adjust them here.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camp.runtime.errors import CampError

GIB = 2**30

CONTEXT_GIB = 0.75
PREFILL_TOKENS = 8192  # LMDeploy's default max_prefill_token_num
HEADROOM_MIN_GIB = 1.0
HEADROOM_FRACTION = 0.10
RATIO_STEP = 0.05
RATIO_MAX = 0.9
WANT_TOKENS = 8192
MIN_TOKENS = 2048
AWQ_GROUP_SIZE = 128
KV_BYTES = {0: 2.0, 8: 1.0, 4: 0.5}  # bytes per cached element for each --quant-policy


# ---------------------------------------------------------------------------------------------- quant spec
@dataclass(frozen=True)
class Quant:
    """What `quant=` asks for: AWQ weights (`w4a16`) and/or a KV-cache policy (None = let the plan choose)."""

    weights: str = "hf"  # "hf" | "awq"
    kv: int | None = None  # None | 0 | 4 | 8

    def __str__(self) -> str:
        parts = ["w4a16"] if self.weights == "awq" else []
        if self.kv is not None:
            parts.append(f"kv{self.kv}" if self.kv else "kv16")
        return "+".join(parts) or "none"


_KV_WORDS = {"kv8": 8, "kvint8": 8, "int8": 8, "kv4": 4, "kvint4": 4, "int4": 4, "kv16": 0, "kv0": 0, "kvfp16": 0}


def parse_quant(quant: str | None) -> Quant:
    """"w4a16" (AWQ weights), "kv8"/"kv4" (KV cache int8/int4), "kv16" (no KV quantization), combined with "+":
    "w4a16+kv4". None/""/"auto": unquantized weights, the plan picks the KV policy."""
    if quant is None:
        return Quant()
    s = str(quant).strip().lower().replace(" ", "")
    if s in ("", "auto", "none", "no"):
        return Quant()
    weights, kv = "hf", None
    for part in s.replace(",", "+").split("+"):
        if part in ("w4a16", "awq", "w4"):
            weights = "awq"
        elif part in _KV_WORDS:
            kv = _KV_WORDS[part]
        else:
            raise CampError(f"unknown quantization {part!r} in {quant!r} — use w4a16 (AWQ 4-bit weights), kv8 or "
                            "kv4 (KV cache int8/int4), kv16 (no KV quantization), or a combination like w4a16+kv4")
    return Quant(weights, kv)


# ---------------------------------------------------------------------------------------------- the model
def read_config(folder: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def awq_group_size(config: dict) -> int | None:
    """The group size when config.json says the weights are AWQ-quantized (LMDeploy writes quant_method awq)."""
    q = config.get("quantization_config") or {}
    if str(q.get("quant_method", "")).lower() == "awq":
        return int(q.get("group_size") or AWQ_GROUP_SIZE)
    return None


def weight_gib(arch, model_format: str = "hf", group_size: int = AWQ_GROUP_SIZE) -> float:
    """Memory of the weights on the GPU (all GPUs together)."""
    if model_format == "awq":
        per_param = 0.5 + 2 / group_size + 0.5 / group_size  # int4 + fp16 scale + int4 zero per group
        other = arch.params - arch.linear_params
        return (arch.linear_params * per_param + other * 2) / GIB
    return arch.params * 2 / GIB


def kv_bytes_per_token(arch, policy: int) -> float:
    """KV cache bytes per token of context, all layers, all GPUs together."""
    return 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * KV_BYTES[policy]


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class ServePlan:
    """The numbers behind LMDeploy's flags (formula: this module's docstring). GiB are per GPU."""

    profile: str
    tp: int
    model_format: str
    quant_policy: int
    cache_max_entry_count: float
    free_gib: float
    weights_gib: float
    runtime_gib: float
    headroom_gib: float
    kv_gib: float
    kv_tokens: int
    nominal: bool  # True when F is the profile's nominal size (this machine does not have its GPUs)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        kv = {0: "fp16", 8: "int8", 4: "int4"}[self.quant_policy]
        src = "nominal size of the profile" if self.nominal else "free now"
        lines = [
            f"LMDeploy memory plan on {self.profile} (per GPU, tp={self.tp}):",
            f"  free            {self.free_gib:7.2f} GiB   ({src})",
            f"  weights         {self.weights_gib:7.2f} GiB   ({self.model_format})",
            f"  runtime         {self.runtime_gib:7.2f} GiB   (CUDA context, prefill activations)",
            f"  headroom        {self.headroom_gib:7.2f} GiB   (other processes on the GPU)",
            f"  KV cache        {self.kv_gib:7.2f} GiB   = --cache-max-entry-count {self.cache_max_entry_count:g} "
            f"of the {self.free_gib - self.weights_gib:.2f} GiB left after the weights",
            f"  KV {kv:<5}       {self.kv_tokens:7d} tokens of context in all (--quant-policy {self.quant_policy})",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _free_per_gpu(profile) -> tuple[float, bool]:
    from camp.runtime import hardware

    gpus = list(profile.gpus or [])
    if gpus and hardware.choose_profile(gpus) == profile.name:
        return min(g.free_mib for g in gpus) / 1024, False
    return float(profile.memory_gb), True


def _one(arch, profile, free: float, nominal: bool, tp: int, policy: int, model_format: str,
         group_size: int) -> ServePlan:
    weights = weight_gib(arch, model_format, group_size) / tp
    runtime = CONTEXT_GIB + PREFILL_TOKENS * (4 * arch.hidden_size + 2 * arch.intermediate_size) * 2 / GIB / tp
    headroom = max(HEADROOM_MIN_GIB, HEADROOM_FRACTION * free)
    left = free - weights
    kv = left - runtime - headroom
    ratio = 0.0
    if left > 0 and kv > 0:
        # floor to the step; the epsilon keeps 0.55 from becoming 0.5 through float error
        ratio = min(RATIO_MAX, math.floor(kv / left / RATIO_STEP + 1e-9) * RATIO_STEP)
        ratio = round(ratio, 2)
    kv_used = ratio * left if left > 0 else 0.0
    tokens = int(kv_used * GIB / (kv_bytes_per_token(arch, policy) / tp)) if ratio > 0 else 0
    name = profile.name
    return ServePlan(name, tp, model_format, policy, ratio, round(free, 3), round(weights, 3), round(runtime, 3),
                     round(headroom, 3), round(kv_used, 3), tokens, nominal)


def plan_serving(arch, profile, *, quant: Quant | str | None = None, tp: int | None = None,
                 model_format: str = "hf", group_size: int = AWQ_GROUP_SIZE) -> ServePlan:
    """tp, --cache-max-entry-count and --quant-policy for serving `arch` (a camp.plan.Arch) on `profile`."""
    q = quant if isinstance(quant, Quant) else parse_quant(quant)
    if profile.device != "cuda":
        raise CampError(f"profile {profile.name} has no GPU: LMDeploy needs CUDA (on CPU camp serves with "
                        "`transformers serve`)")
    free, nominal = _free_per_gpu(profile)
    count = max(1, profile.gpu_count if nominal else len(profile.gpus))
    if tp is not None:
        if tp < 1 or tp & (tp - 1):
            raise CampError(f"tp={tp}: LMDeploy's tensor parallelism needs a power of two (1, 2, 4, 8)")
        if tp > count:
            raise CampError(f"tp={tp} but profile {profile.name} has {count} GPU(s) — use tp ≤ {count}")
        tps = [tp]
    else:
        tps = [t for t in (1, 2, 4, 8) if t <= count]
    chosen = None
    for t in tps:
        if _one(arch, profile, free, nominal, t, 0, model_format, group_size).kv_tokens >= MIN_TOKENS:
            chosen = t
            break
    if chosen is None:
        chosen = tps[-1]
    policies = [q.kv] if q.kv is not None else [0, 8, 4]
    plans = [_one(arch, profile, free, nominal, chosen, p, model_format, group_size) for p in policies]
    plan = next((p for p in plans if p.kv_tokens >= WANT_TOKENS), None)
    if plan is None:
        plan = max(plans, key=lambda p: p.kv_tokens)
        if plan.kv_tokens < MIN_TOKENS:
            raise CampError(_no_fit_message(arch, profile, plan, q, model_format))
        if q.kv is None:
            plan.notes.append(f"only {plan.kv_tokens} tokens of KV cache fit even at the smallest KV policy: "
                              "long conversations or many users at once will wait")
    elif q.kv is None and plan.quant_policy:
        plan.notes.append(f"KV cache quantized to int{plan.quant_policy} (--quant-policy {plan.quant_policy}): "
                          f"at fp16 it would hold only {plans[0].kv_tokens} tokens")
    if plan.tp > 1 and tp is None:
        plan.notes.append(f"the weights do not fit one GPU: tensor parallel over {plan.tp} GPUs")
    return plan


def _no_fit_message(arch, profile, plan: ServePlan, q: Quant, model_format: str) -> str:
    ideas = []
    if model_format != "awq":
        ideas.append("quantize the weights to 4 bits first (camp.quantize(model), then serve the name it registers)")
    weights_fit = plan.weights_gib + plan.runtime_gib + plan.headroom_gib < plan.free_gib
    if weights_fit and q.kv != 4:
        ideas.append("quant='kv4'")
    ideas.append("a bigger profile or more GPUs (tp)")
    return (f"{arch.name or 'the model'} does not fit {profile.name} for serving: per GPU {plan.free_gib:.1f} GiB "
            f"free, weights {plan.weights_gib:.1f}, runtime {plan.runtime_gib:.1f}, headroom {plan.headroom_gib:.1f} "
            f"GiB leave room for only {plan.kv_tokens} tokens of KV cache (need ≥ {MIN_TOKENS}) — try "
            + "; or ".join(ideas))
