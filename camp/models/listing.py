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
    head = ("name", "params", "ModelScope id", "chat GB", "LoRA GB", "QLoRA GB", "here")
    table = [head] + [
        (m.name, f"{m.params:g}B" if m.params >= 0.1 else f"{m.params * 1000:.2g}M", m.modelscope or "(built locally)",
         _gb(m.memory_gb.get("chat")), _gb(m.memory_gb.get("lora")), _gb(m.memory_gb.get("qlora")), state)
        for m, state, _ in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    right = {1, 3, 4, 5}
    for r in table:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    print(f"\nmemory: GB on one GPU (estimates, see assets/models.json); cache: {config.models_dir()}")
    if reg:  # fine-tuned / quantized models camp registered by name
        print("\nregistered:")
        for k, v in sorted(reg.items()):
            print(f"  {k:<24} from {v.get('base') or '?':<24} {v.get('path')}")
    return 0
