"""Getting a model folder: `camp download`, `download()`, `resolve()`.

Where a model comes from, first hit wins:
  (a) `tiny` and `tiny-vl` are built locally (camp.models.tiny, camp.multimodal.tiny_vl) — no hub at all;
  (b) a shared model folder (camp.runtime.config.shared_model_dirs(), e.g. InternStudio's read-only
      /root/share/new_models/Shanghai_AI_Laboratory/internlm2_5-7b-chat) — used in place, never copied;
  (c) the local cache (camp.runtime.config.models_dir() or cache_dir) — a folder counts only if it holds camp's
      completion marker, written after the whole snapshot arrived and was checked;
  (d) ModelScope snapshot_download, then (e) a Hugging Face endpoint if HF_ENDPOINT/CAMP_HF_ENDPOINT is set.
Models camp made (fine-tuned and merged by camp.finetune) are registered by name (camp.models.registry);
get()/resolve()/download() accept those names too.
Before (d)/(e) a ~1.5 s DNS+TCP probe of the hub decides whether to try at all: the hub clients' own
retries take 8-22 s to give up offline.

InternLM2 text checkpoints ship modelling code that breaks on current transformers, so every folder of one
is passed through camp.models.internlm2.normalize() (a Llama-layout copy every env loads natively). Vision models
(XComposer2, InternVL2) are returned as downloaded: they need their remote code.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from camp.models.listing import WEIGHT_SUFFIXES, Model, _lookup, get
from camp.models.registry import _registered_entry, _registered_folder
from camp.runtime import config, markers
from camp.runtime.errors import CampError

MARKER = markers.MARKER
DEFAULT_MODELSCOPE = "https://www.modelscope.cn"
DEFAULT_HF = "https://huggingface.co"
PROBE_TIMEOUT = 1.5


# ---------------------------------------------------------------- reachability
def modelscope_endpoint() -> str:
    ep = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN") or DEFAULT_MODELSCOPE
    return ep if "://" in ep else "https://" + ep


def hf_endpoint() -> str | None:
    """The Hugging Face endpoint to fall back to, only when one is configured (e.g. https://hf-mirror.com)."""
    ep = os.environ.get("CAMP_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT")
    if not ep:
        return None
    return ep if "://" in ep else "https://" + ep


def _target(url: str) -> tuple[str, int, str]:
    """(host, port, label) to probe for url: the proxy when one applies, since the hub is reached through it."""
    import urllib.request  # lazily: it pulls in http.client and email (~25 ms)

    u = urlsplit(url)
    host = u.hostname or url
    port = u.port or (443 if u.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(u.scheme) or urllib.request.getproxies().get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if p.hostname:
            return p.hostname, p.port or 80, f"{host} via proxy {p.hostname}:{p.port or 80}"
    return host, port, f"{host}:{port}"


def _probe_worker(host: str, port: int, deadline: float, out: dict, key: str) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        out[key] = (False, f"DNS lookup of {host} failed")
        return
    last = "no address"
    for family, kind, proto, _, addr in infos[:4]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(left)
                s.connect(addr)
            out[key] = (True, "reachable")
            return
        except OSError as exc:
            last = exc.strerror or type(exc).__name__
    out[key] = (False, f"cannot connect to {host}:{port} ({last})")


def probe_many(urls: dict[str, str], timeout: float = PROBE_TIMEOUT) -> dict[str, tuple[bool, str]]:
    """Probe several hub urls in parallel: {key: (reachable, why)}; never takes much longer than timeout."""
    deadline = time.monotonic() + timeout
    out: dict[str, tuple[bool, str]] = {}
    threads = []
    labels = {}
    for key, url in urls.items():
        host, port, labels[key] = _target(url)
        # daemon threads: a DNS lookup stuck in the resolver must not keep the process alive
        t = threading.Thread(target=_probe_worker, args=(host, port, deadline, out, key), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return {k: out.get(k, (False, f"no answer from {labels[k]} within {timeout:g} s")) for k in urls}


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Is the host of url reachable (DNS + TCP connect)? (ok, why) within ~timeout seconds."""
    return probe_many({"u": url}, timeout)["u"]


# ---------------------------------------------------------------- completeness
def verify(path: Path) -> str | None:
    """None when the folder looks like a complete checkpoint, else what is missing."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file() or cfg.stat().st_size == 0:
        return "config.json missing or empty"
    indexes = sorted(path.glob("*.index.json"))
    if indexes:
        for idx in indexes:
            try:
                shards = set(json.loads(idx.read_text())["weight_map"].values())
            except (ValueError, KeyError, OSError):
                return f"{idx.name} is not a valid weight index"
            for shard in sorted(shards):
                f = path / shard
                if not f.is_file() or f.stat().st_size == 0:
                    return f"weight shard {shard} (named in {idx.name}) missing or empty"
        return None
    weights = [f for f in path.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file() and f.stat().st_size > 0]
    if not weights:
        return "no weight file (*.safetensors / *.bin)"
    return None


def write_marker(path: Path, model_id: str, revision: str, source: str) -> None:
    """Mark a downloaded snapshot complete (after every file arrived and verify() passed)."""
    markers.mark(path, "download", model=model_id, revision=revision, source=source)


def marker_ok(path: Path, model: Model, revision: str | None = None) -> bool:
    """True when path holds camp's completion marker for this model (and revision) and every file it lists."""
    data = markers.read(path) or {}
    if str(data.get("model", "")).lower() not in [i.lower() for i in model.ids]:
        return False
    if revision is not None and data.get("revision") != revision:
        return False
    return markers.is_complete(path, "download")


# ---------------------------------------------------------------- local copies
def _shared_candidates(model: Model) -> list[Path]:
    rels = [*model.ids, model.name, *[i.rsplit("/", 1)[-1] for i in model.ids]]
    seen, out = set(), []
    for d in config.shared_model_dirs():
        for r in rels:
            p = d / r
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def _cache_candidates(model: Model, cache: Path, revision: str | None) -> list[tuple[Path, str | None]]:
    """(folder, revision it must carry) in each layout a snapshot of model may sit in under cache."""
    out: list[tuple[Path, str | None]] = []
    if model.modelscope:
        owner, _, repo = model.modelscope.partition("/")
        rev = revision or model.revision
        out += [(cache / "models" / f"{owner}--{repo}" / "snapshots" / rev, rev),  # ModelScope >= 1.38
                (cache / "models" / owner / repo, rev),  # older ModelScope
                (cache / owner / repo, rev)]
    if model.hf:
        owner, _, repo = model.hf.partition("/")
        base = cache / "hf" / f"models--{owner}--{repo}" / "snapshots"
        if base.is_dir():
            out += [(p, None) for p in sorted(base.iterdir())]  # the marker carries the revision asked for
    return out


def _hf_revision(revision: str | None) -> str:
    return "main" if revision in (None, "master") else revision


def find_local(model: Model, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None
               ) -> tuple[Path, str] | None:
    """(folder, "shared"|"cache") when model is already on this machine; never touches the network."""
    if revision is None:  # a shared folder has no revision: only use it when none was asked for
        for p in _shared_candidates(model):
            if p.is_dir() and verify(p) is None:
                return p, "shared"
    cache = Path(cache_dir).expanduser() if cache_dir else config.models_dir()
    for p, rev in _cache_candidates(model, cache, revision):
        if rev is None:
            ok = marker_ok(p, model, _hf_revision(revision))
        else:
            ok = marker_ok(p, model, rev)
        if ok:
            return p, "cache"
    return None


# ---------------------------------------------------------------- hubs (patched in tests)
def _ms_snapshot_download(model_id: str, **kwargs) -> str:
    from modelscope.hub.snapshot_download import snapshot_download

    return snapshot_download(model_id, **kwargs)


def _hf_snapshot_download(repo_id: str, **kwargs) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=repo_id, **kwargs)


def _progress(label: str):
    """A ModelScope progress-callback class feeding ONE bar for the whole snapshot (per-file bars of a
    dozen shards are noise). Returns (callback class or None, close function)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)
    lock = threading.Lock()

    class Callback:
        def __init__(self, filename: str, file_size: int):
            with lock:
                bar.total = (bar.total or 0) + max(int(file_size or 0), 0)
                bar.refresh()

        def update(self, size: int) -> None:
            with lock:
                bar.update(size)

        def end(self) -> None:
            pass

    return Callback, bar.close


def _lock(cache: Path, model_id: str):
    """One download of a model at a time (two notebooks asking at once would corrupt each other's files)."""
    return config.file_lock(cache / ".locks" / (model_id.replace("/", "--") + ".lock"),
                            f"camp: waiting for another download of {model_id} to finish …")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return (msg[:300] + "…") if len(msg) > 300 else msg


def _fetch(model: Model, hub: str, revision: str | None, cache: Path, progress: bool) -> Path:
    """Download a snapshot from one hub, verify it, then mark it complete. CampError on any failure."""
    label = model.name
    if hub == "modelscope":
        rev = revision or model.revision
        model_id = model.modelscope
    else:
        rev = _hf_revision(revision)
        model_id = model.hf
    close = lambda: None  # noqa: E731
    try:
        if hub == "modelscope":
            kwargs = {"revision": rev, "cache_dir": str(cache)}
            if progress:
                cb, close = _progress(label)
                if cb is not None:
                    kwargs["progress_callbacks"] = [cb]
            path = Path(_ms_snapshot_download(model_id, **kwargs))
        else:
            path = Path(_hf_snapshot_download(model_id, revision=rev, cache_dir=str(cache / "hf"),
                                              endpoint=hf_endpoint()))
    except CampError:
        raise
    except Exception as exc:
        where = "ModelScope" if hub == "modelscope" else f"Hugging Face ({hf_endpoint()})"
        raise CampError(
            f"downloading {label} ({model_id}@{rev}) from {where} failed: {_one_line(exc)} — files that arrived "
            f"stay in {cache}; run `camp download {label}` again to resume (camp marks a folder complete only "
            "after every file is there)"
        ) from exc
    finally:
        close()
    problem = verify(path) if path.is_dir() else f"{path} is not a folder"
    if problem:
        raise CampError(
            f"the download of {label} ({model_id}@{rev}) in {path} is incomplete: {problem} — "
            f"run `camp download {label}` again"
        )
    write_marker(path, model_id, rev, hub)
    return path


def _offline_message(model: Model, cache: Path, reasons: list[str]) -> str:
    shared = config.shared_model_dirs()
    where = f"the cache {cache}"
    if shared:
        where = f"the shared folders ({', '.join(map(str, shared))}) or " + where
    target = f"{shared[0]}/{model.modelscope or model.name}" if shared else str(cache)
    return (
        f"{model.name} ({model.modelscope or model.hf}) is not in {where}, and no model hub is reachable "
        f"({'; '.join(reasons)}) — copy the model folder to {target} (or set CAMP_SHARED_MODELS to the folder "
        "that holds it), or pass the folder path instead of the name, or use the embedded model `tiny`, "
        "or set MODELSCOPE_ENDPOINT / HF_ENDPOINT to a reachable mirror"
    )


# The embedded models, built locally (no hub): catalogue name -> the module with default_dir/is_complete/ensure.
EMBEDDED = {"tiny": "camp.models.tiny", "tiny-vl": "camp.multimodal.tiny_vl"}


def embedded_builder(model: Model):
    """The builder module of an embedded model (tiny, tiny-vl), or None for a hub model."""
    if model.ids or model.name not in EMBEDDED:
        return None
    import importlib

    return importlib.import_module(EMBEDDED[model.name])


def local_folder(name_or_id: str) -> Path | None:
    """The model's folder when it is already on this machine (registered, a finished tiny build, a shared or
    cached copy), else None — never downloads or builds anything."""
    try:
        model = _lookup(name_or_id)
    except CampError:
        return None
    if "registered" in model.source:
        entry = _registered_entry(model.name)
        return Path(entry["path"]) if entry and Path(entry["path"]).is_dir() else None
    builder = embedded_builder(model)
    if builder is not None:
        return builder.default_dir() if builder.is_complete(builder.default_dir()) else None
    hit = find_local(model)
    return hit[0] if hit else None


def download(name_or_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
             progress: bool = True) -> Path:
    """A local folder holding the model: tiny → built; shared folder or cache → instant; else ModelScope,
    then HF if configured. InternLM2 text models come back normalised (see module docstring)."""
    model = _lookup(name_or_id)
    if "registered" in model.source:
        return _registered_folder(model.name)
    builder = embedded_builder(model)
    if builder is not None:
        return Path(builder.ensure())
    cache = Path(cache_dir).expanduser() if cache_dir else config.models_dir()
    hit = find_local(model, revision=revision, cache_dir=cache)
    if hit:
        return _finish(model, hit[0])

    hubs: list[tuple[str, str]] = []
    if model.modelscope:
        hubs.append(("modelscope", modelscope_endpoint()))
    if model.hf and hf_endpoint():
        hubs.append(("hf", hf_endpoint()))
    reach = probe_many({h: url for h, url in hubs})
    reasons = [f"{urlsplit(url).hostname}: {reach[h][1]}" for h, url in hubs if not reach[h][0]]
    if not hf_endpoint():
        reasons.append("no HF_ENDPOINT set")
    failures: list[CampError] = []
    for hub, _url in hubs:
        if not reach[hub][0]:
            continue
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with _lock(cache, model.modelscope if hub == "modelscope" else model.hf):
                hit = find_local(model, revision=revision, cache_dir=cache)  # another process may have finished
                path = hit[0] if hit else _fetch(model, hub, revision, cache, progress)
            return _finish(model, path)
        except CampError as exc:
            failures.append(exc)
            if hub == "modelscope" and len(hubs) > 1:
                print(f"camp: {exc} — trying Hugging Face next", file=sys.stderr)
    if failures:
        raise failures[-1]
    raise CampError(_offline_message(model, cache, reasons))


# ---------------------------------------------------------------- InternLM2 → normalised folder
def _looks_internlm2(path: Path) -> bool:
    """Cheap pre-check on config.json so plain Llama folders (tiny) never import the converter."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    text = " ".join([str(cfg.get("model_type", "")), *map(str, cfg.get("architectures") or [])]).lower()
    return "internlm2" in text


def _finish(model: Model, path: Path) -> Path:
    """Normalise InternLM2 text checkpoints; return everything else as it is."""
    if model.modality != "text":
        return path
    if model.arch == "internlm2" or (model.arch == "unknown" and _looks_internlm2(path)):
        import importlib

        conv = importlib.import_module("camp.models.internlm2")
        if model.arch == "internlm2" or conv.is_internlm2(path):
            return Path(conv.normalize(path))
    return path


def _pathlike(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or (os.sep != "/" and os.sep in s)


def resolve(model: str | os.PathLike | None = "auto", *, profile=None) -> Path:
    """The folder chat/finetune/eval load: "auto" → the profile's default model; a local folder → itself
    (normalised when it is an InternLM2 checkpoint); a catalogue name or hub id → download()."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    s = (model or "auto").strip()
    if s.lower() == "auto":
        from camp.runtime import hardware

        prof = hardware.profile(profile)
        return download(prof.default_model)
    listed = True
    try:
        get(s)
    except CampError:
        listed = False
    p = Path(s).expanduser()
    if (not listed or _pathlike(s)) and p.is_dir():
        p = p.resolve()
        if _looks_internlm2(p):
            return _finish(Model(name=p.name, arch="unknown"), p)
        return p
    if _pathlike(s):
        raise CampError(f"no model folder at {p} — check the path, or give a catalogue name (see `camp models`)")
    return download(s)


def cli_download(args) -> int:
    # Only the folder goes to stdout so `$(camp download NAME)` works; progress and notes go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        path = download(args.name, revision=getattr(args, "revision", None),
                        cache_dir=getattr(args, "cache_dir", None), progress=True)
    print(path)
    return 0
