"""What an evaluation scores: local model folders (catalogue/registered names, folders) and OpenAI-compatible
endpoints, each checked before OpenCompass starts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from camp.evaluation.datasets import _safe, _unique
from camp.runtime.errors import CampError
from camp.serving.client import _detail_of, parse_url


# ================================================================================== models
@dataclass
class ModelSpec:
    name: str  # display name: catalogue/registered name, folder name, "endpoint:<model>"
    kind: str  # "local" | "endpoint"
    abbr: str = ""  # what OpenCompass calls it (file-name safe, unique)
    path: str = ""  # local folder, or the model name the endpoint expects
    base_url: str = ""
    api_key: str | None = None
    tokenizer: str = ""
    remote_code: bool = False
    weights_gb: float = 0.0
    notes: list[str] = field(default_factory=list)


def _endpoint_spec(base_url: str, model: str | None, api_key: str | None, tokenizer: str | None,
                   folder: Path | None = None) -> ModelSpec:
    from camp.serving.client import Client

    client = Client(base_url, model, api_key)
    base_url = client.base_url
    status, body = client.request("GET", "/models")
    if status == 0:
        raise client.unreachable()
    if status in (401, 403):
        raise CampError(f"endpoint {base_url} refused the API key ({status}) — pass the server's key with "
                        "api_key=… / --api-key")
    if model is None:
        ids = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)] if isinstance(body, dict) else []
        if not ids:
            raise CampError(f"endpoint {base_url} lists no models — name the one it serves: {base_url}#MODEL")
        model = ids[0]
    # One 1-token request: a wrong model name fails here, in a second, instead of as a retry loop inside
    # OpenCompass.
    status, body = client.request("POST", "/chat/completions", timeout=120, body={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    if status == 0:
        raise client.unreachable()
    if status in (401, 403):
        raise CampError(f"endpoint {base_url} refused the API key ({status}) — pass the server's key with "
                        "api_key=… / --api-key")
    if status >= 400:
        raise CampError(f"endpoint {base_url} rejected a request for model {model!r} ({status}: {_detail_of(body)}) — "
                        f"name the model the server serves: {base_url}#MODEL")
    spec = ModelSpec(name=f"endpoint:{Path(model).name if '/' in model else model}", kind="endpoint",
                     path=model, base_url=base_url, api_key=api_key)
    # OpenAISDK counts prompt tokens with a local tokenizer; without one it downloads tiktoken files.
    if tokenizer:
        tok = Path(tokenizer).expanduser()
        if not tok.is_dir() or not any((tok / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                                      "tokenizer.model")):
            raise CampError(f"tokenizer {tok}: not a folder with tokenizer files (tokenizer.json / "
                            "tokenizer_config.json) — give the served model's folder")
        spec.tokenizer = str(tok.resolve())
    elif folder is not None and Path(folder).is_dir():
        spec.tokenizer = str(Path(folder).resolve())  # a camp Endpoint knows the folder it serves
    elif Path(model).is_dir():
        spec.tokenizer = str(Path(model).resolve())
    else:
        from camp import models

        local = models.local_folder(model)  # catalogue, registered or built: already on this machine
        if local is not None:
            spec.tokenizer = str(local)
        else:
            from camp.models import tiny

            spec.tokenizer = str(tiny.ensure())
            spec.notes.append(f"{spec.name}: no local tokenizer for {model!r}; prompt lengths are counted with the "
                              "tiny model's tokenizer (pass tokenizer=… / --tokenizer for exact counts)")
    return spec




def _weights_gb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.iterdir()
                if f.is_file() and f.suffix in (".safetensors", ".bin", ".pth", ".pt"))
    return total / 1e9


def _local_spec(item, profile) -> ModelSpec:
    from camp import models
    from camp.models import hub

    s = os.fspath(item).strip()
    try:
        listed = models.get(s)
    except CampError:
        listed = None
    folder_given = hub._pathlike(s) or (listed is None and Path(s).expanduser().is_dir())
    path = models.resolve(s, profile=profile)  # CampError with suggestions for unknown names / missing folders
    problem = models.verify(path)
    if problem:
        raise CampError(f"model folder {path} is incomplete: {problem} — re-download it or point at the right folder")
    if listed is not None and not folder_given:
        name = listed.name
        if listed.modality != "text":
            raise CampError(f"{listed.name} is a {listed.modality} model; camp.evaluate runs text chat models")
    elif folder_given:
        name = Path(s).expanduser().resolve().name
    else:
        name = s  # a registered name (camp.models.register)
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    return ModelSpec(name=name, kind="local", path=str(path), remote_code=bool(cfg.get("auto_map")),
                     weights_gb=_weights_gb(Path(path)))


def resolve_models(models_, *, api_key: str | None = None, tokenizer: str | None = None, profile=None
                   ) -> list[ModelSpec]:
    """Check every model; nothing runs. Local names/folders resolve (and download) through camp.models;
    endpoints must answer. Display names are made unique."""
    if isinstance(models_, (str, os.PathLike)) or hasattr(models_, "base_url"):
        models_ = [models_]
    if not models_:
        raise CampError("no model given — a catalogue name (see `camp models`), a local folder, or an endpoint URL")
    specs: list[ModelSpec] = []
    for m in models_:
        if hasattr(m, "base_url") and hasattr(m, "model"):  # camp.serving.Endpoint or alike
            base, model = parse_url(str(m.base_url))
            specs.append(_endpoint_spec(base, getattr(m, "model", None) or model,
                                        getattr(m, "api_key", None) or api_key, tokenizer, getattr(m, "folder", None)))
        elif isinstance(m, str) and re.match(r"https?://", m.strip()):
            base, model = parse_url(m.strip())
            specs.append(_endpoint_spec(base, model, api_key, tokenizer))
        elif isinstance(m, (str, os.PathLike)):
            specs.append(_local_spec(m, profile))
        else:
            raise CampError(f"model {m!r}: give a catalogue name, a folder, an endpoint URL or a camp.serving.Endpoint")
    names: set[str] = set()
    abbrs: set[str] = set()
    for sp in specs:
        sp.name = _unique(sp.name, names)
        sp.abbr = _unique(_safe(sp.name.replace(":", "_")), abbrs)
    keys = {sp.api_key for sp in specs if sp.kind == "endpoint" and sp.api_key not in (None, "", "EMPTY")}
    if len(keys) > 1:
        raise CampError("endpoints with different API keys in one evaluation: evaluate them in separate calls")
    return specs
