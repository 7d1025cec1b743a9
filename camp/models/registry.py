"""Models camp made (fine-tuned, merged, quantized), registered by name in `$CAMP_HOME/registry.json`:
camp.chat, camp.resolve and every later stage accept the name.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from camp.models.listing import Model, _keys, catalogue
from camp.runtime import config
from camp.runtime.errors import CampError

# ---------------------------------------------------------------- registered (camp-made) models
REGISTRY = "registry.json"
# A registered name is one "word": letters (any script), digits, and . _ - · (no slash: that is a hub id).
_NAME_RE = re.compile(r"[^\W_][\w.\-·]*", re.UNICODE)


def _registry_path() -> Path:
    return config.home() / REGISTRY


def _read_registry() -> dict[str, dict]:
    try:
        data = json.loads(_registry_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CampError(f"{_registry_path()} is not readable JSON ({exc}) — fix or delete it "
                        "(it only lists fine-tuned models; their folders stay where they are)") from exc
    return data.get("models", {}) if isinstance(data, dict) else {}


def _registry_lock():
    """One writer at a time: two notebooks finishing a fine-tune together must not lose an entry."""
    path = _registry_path()
    return config.file_lock(path.parent / f".{REGISTRY}.lock")


def _write_registry(models: dict[str, dict]) -> None:
    path = _registry_path()
    tmp = path.with_name(f".{REGISTRY}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"models": models}, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def registered() -> dict[str, dict]:
    """Models registered by name (fine-tuned by camp): {name: {"path", "base", "meta", "time"}}."""
    return _read_registry()


def _registered_entry(name: str) -> dict | None:
    reg = _read_registry()
    if name in reg:
        return reg[name]
    low = name.lower()
    for k, v in reg.items():
        if k.lower() == low:
            return v
    return None


def _registered_model(name: str, entry: dict) -> Model:
    """A Model describing a registered folder; sizes and template come from its base when that is listed."""
    wanted = str(entry.get("base") or "").lower()
    base = next((m for m in catalogue() if wanted in _keys(m)), None) if wanted else None
    key = next((k for k in _read_registry() if k.lower() == name.lower()), name)
    return Model(name=key, title=f"{key} (fine-tuned from {entry.get('base') or 'a local model'})",
                 params=base.params if base else 0.0, dtype="float16", arch="unknown",
                 chat_template=base.chat_template if base else "internlm2", remote_code=False,
                 memory_gb=dict(base.memory_gb) if base else {}, source=["registered"])


def _registered_folder(name: str) -> Path:
    from camp.models.hub import _finish, _looks_internlm2, verify

    entry = _registered_entry(name) or {}
    path = Path(entry.get("path", ""))
    problem = verify(path) if path.is_dir() else "the folder is gone"
    if problem:
        raise CampError(f"registered model {name!r} points to {path}: {problem} — fine-tune it again, or remove "
                        f"the name with camp.models.unregister({name!r})")
    if _looks_internlm2(path):  # a merge of an unnormalised InternLM2 checkpoint: normalise like any other
        return _finish(Model(name=name, arch="unknown"), path)
    return path


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not _NAME_RE.fullmatch(name):
        raise CampError(f"{name!r} cannot be a model name — use letters, digits and . _ - (no spaces or slashes), "
                        "e.g. tiny-ft-小助手")
    if name.lower() == "auto" or any(name.lower() in _keys(m) for m in catalogue()):
        raise CampError(f"{name!r} is a catalogue model name — choose another name for your fine-tuned model")
    return name


def _check_folder(name: str, path) -> Path:
    from camp.models.hub import verify

    folder = Path(path).expanduser().resolve()
    problem = verify(folder) if folder.is_dir() else "no such folder"
    if problem:
        raise CampError(f"cannot register {folder} as {name!r}: {problem}")
    return folder


def _holder(reg: dict, name: str) -> str | None:
    return next((k for k in reg if k.lower() == name.lower()), None)


def _write_entry(reg: dict, name: str, folder: Path, base, meta) -> None:
    old = _holder(reg, name)
    if old is not None:
        del reg[old]
    reg[name] = {"path": str(folder), "base": base, "meta": dict(meta or {}),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_registry(reg)


def register(name: str, path: str | os.PathLike, *, base: str | None = None, meta: dict | None = None,
             replace: bool = False) -> Path:
    """Give a model folder a name that camp.chat / camp.resolve / camp.download (and later stages) accept.

    A name that already points to another folder is moved only with replace=True (otherwise a CampError says
    so: see register_new for a versioned name instead). Catalogue names and aliases cannot be taken."""
    name = _check_name(name)
    folder = _check_folder(name, path)
    with _registry_lock():
        reg = _read_registry()
        old = _holder(reg, name)
        if old is not None and not replace and Path(reg[old].get("path", "")) != folder:
            raise CampError(f"the name {old!r} is already registered for {reg[old].get('path')} — pass replace=True "
                            f"to move it to {folder}, choose another name, or camp.models.unregister({old!r}) first")
        _write_entry(reg, name, folder, base, meta)
    return folder


def register_new(name: str, path: str | os.PathLike, *, base: str | None = None, meta: dict | None = None,
                 replace: bool = False) -> str:
    """Register `path` under `name`, or — when `name` already points to another folder and replace is False —
    under the first free versioned name (name-2, name-3, …), keeping the earlier model. Returns the name used."""
    name = _check_name(name)
    folder = _check_folder(name, path)
    with _registry_lock():
        reg = _read_registry()
        chosen, n = name, 1
        while not replace:
            old = _holder(reg, chosen)
            if old is None or Path(reg[old].get("path", "")) == folder:
                break
            n += 1
            chosen = f"{name}-{n}"
        _write_entry(reg, chosen, folder, base, meta)
    return chosen


def unregister(name: str) -> bool:
    """Forget a registered name (the folder stays). True when it was registered."""
    with _registry_lock():
        reg = _read_registry()
        keys = [k for k in reg if k.lower() == str(name).strip().lower()]
        for k in keys:
            del reg[k]
        if keys:
            _write_registry(reg)
    return bool(keys)
