"""The course model catalogue (assets/models.json): every course model once, by name, alias, ModelScope or HF id;
registered (camp-made) names resolve here too. `camp models` lists it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.runtime.i18n import pad, t, width

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")


@dataclass(frozen=True)
class Model:
    name: str
    title: str = ""
    modelscope: str | None = None
    hf: str | None = None
    revision: str = "master"
    params: float = 0.0  # billions
    dtype: str = "bfloat16"
    arch: str = "unknown"  # internlm2 | internlm-xcomposer2 | internvl2 | llama | unknown (an id outside the catalogue)
    chat_template: str = "internlm2"
    remote_code: bool = True
    modality: str = "text"
    memory_gb: dict = field(default_factory=dict)  # chat / lora / qlora, GB; None = no recipe
    source: list = field(default_factory=list)
    aliases: list = field(default_factory=list)

    @property
    def in_catalogue(self) -> bool:
        return self.arch != "unknown"

    @property
    def ids(self) -> list[str]:
        return [i for i in (self.modelscope, self.hf) if i]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the catalogue
@lru_cache(maxsize=4)
def _load(path: str) -> tuple[Model, ...]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(Model)}
    return tuple(Model(**{k: v for k, v in m.items() if k in names}) for m in data["models"])


def catalogue() -> list[Model]:
    """Every course model, in course order (read once from assets/models.json)."""
    return list(_load(str(config.assets_dir() / "models.json")))


def lesson_model(lesson: str, model="auto", profile=None) -> str:
    """The model a lesson runs: `model` itself unless it is "auto"; for "auto" the catalogue's default for that
    lesson (assets/models.json "lesson_defaults", e.g. "chat_demo" → internlm2-chat-1_8b) on a GPU profile, else
    the profile's default (cpu-tiny: tiny)."""
    from camp.runtime import hardware

    if not isinstance(model, str) or model.strip().lower() != "auto":
        return model
    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    if prof.device != "cuda":
        return prof.default_model
    data = json.loads((config.assets_dir() / "models.json").read_text(encoding="utf-8"))
    key = lesson.split("_", 1)[1] if lesson[:2].isdigit() and "_" in lesson else lesson
    return data.get("lesson_defaults", {}).get(key) or prof.default_model


def _keys(m: Model) -> list[str]:
    keys = [m.name, *m.aliases, *m.ids]
    keys += [i.rsplit("/", 1)[-1] for i in m.ids]  # the bare repo name: InternVL2-2B
    return [k.lower() for k in keys]


def _suggest(query: str) -> list[str]:
    names = {}
    for m in catalogue():
        for k in _keys(m):
            names.setdefault(k, m.name)
    from camp.models.registry import registered

    for r in registered():
        names.setdefault(r.lower(), r)
    close = difflib.get_close_matches(query.lower(), list(names), n=6, cutoff=0.5)
    out: list[str] = []
    for k in close:
        if names[k] not in out:
            out.append(names[k])
    return out[:3]


def get(name_or_id: str) -> Model:
    """A catalogue model by name, alias, ModelScope id or HF id (case-insensitive)."""
    q = str(name_or_id).strip().lower()
    for m in catalogue():
        if q in _keys(m):
            return m
    from camp.models.registry import _registered_entry, _registered_model

    entry = _registered_entry(str(name_or_id).strip())
    if entry is not None:
        return _registered_model(str(name_or_id).strip(), entry)
    hint = _suggest(q)
    if hint:
        did = f"did you mean {' or '.join(hint)}?"
    else:
        did = "the catalogue has " + ", ".join(m.name for m in catalogue()) + ";"
    raise CampError(f"unknown model {name_or_id!r} — {did} see `camp models` (or pass a local folder path "
                    "or a ModelScope id owner/name)")


def _lookup(name_or_id: str) -> Model:
    """get(), but an unlisted ModelScope id owner/name is still downloadable as is."""
    try:
        return get(name_or_id)
    except CampError:
        s = str(name_or_id).strip()
        if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", s):
            return Model(name=s.rsplit("/", 1)[-1], title=s, modelscope=s, hf=s, arch="unknown")
        raise


# ---------------------------------------------------------------- CLI
def _local_state(m: Model) -> tuple[str, str | None]:
    """("shared"|"cache"|"built"|"built on demand"|"-", folder) without network or building anything."""
    if not m.ids:
        try:
            from camp.models.hub import embedded_builder

            builder = embedded_builder(m)
            folder = builder.default_dir()
            if builder.is_complete(folder):
                return "built", str(folder)
        except (ImportError, AttributeError):
            pass
        return "built on demand", None
    from camp.models.hub import find_local

    hit = find_local(m)
    return (hit[1], str(hit[0])) if hit else ("-", None)


def _gb(v) -> str:
    return "-" if v is None else f"{v:g}"


def cli_models(args) -> int:
    from camp.models.registry import registered

    rows = []
    for m in catalogue():
        state, where = _local_state(m)
        rows.append((m, state, where))
    reg = registered()
    if getattr(args, "json", False):
        out = [{**m.to_dict(), "local": where, "state": state} for m, state, where in rows]
        out += [{"name": k, "registered": True, "base": v.get("base"), "local": v.get("path")} for k, v in reg.items()]
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    states = {"built": t("已构建", "built"), "built on demand": t("用到时构建", "built on demand"),
              "shared": t("共享目录", "shared"), "cache": t("缓存", "cache")}
    head = (t("名字", "name"), t("参数量", "params"), "ModelScope id", t("对话 GB", "chat GB"), "LoRA GB",
            "QLoRA GB", t("本机", "here"))
    table = [head] + [
        (m.name, f"{m.params:g}B" if m.params >= 0.1 else f"{m.params * 1000:.2g}M",
         m.modelscope or t("（本地构建）", "(built locally)"),
         _gb(m.memory_gb.get("chat")), _gb(m.memory_gb.get("lora")), _gb(m.memory_gb.get("qlora")),
         states.get(state, state))
        for m, state, _ in rows
    ]
    widths = [max(width(r[i]) for r in table) for i in range(len(head))]
    right = {1, 3, 4, 5}
    for r in table:
        print("  ".join(pad(c, w, right=i in right) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    print(t(f"\n显存：单卡 GB（估算，见 assets/models.json）；缓存目录：{config.models_dir()}",
            f"\nmemory: GB on one GPU (estimates, see assets/models.json); cache: {config.models_dir()}"))
    if reg:  # fine-tuned / quantized models camp registered by name
        print(t("\n已注册的模型：", "\nregistered:"))
        for k, v in sorted(reg.items()):
            print(f"  {k:<24} {t('基于', 'from')} {v.get('base') or '?':<24} {v.get('path')}")
    return 0
