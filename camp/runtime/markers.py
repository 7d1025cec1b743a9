"""Folders that are complete or absent: one completion marker for every folder camp writes or adopts.

A folder is built in a temporary sibling (`building()`), marked last (`mark()`: the marker lists every file with its
size), then moved into place in one rename (`install()`), so a crash never leaves a half-written folder that looks
finished, and a complete folder is never overwritten unless the caller says so. `is_complete()` checks the marker,
its kind, what it records, and every listed file's size.

The marker, `.camp-complete` (JSON):
    {"camp_marker": 1, "kind": "download" | "tiny" | "adapter" | "merged" | "internlm2-llama" | …,
     "time": "…", "files": {"relative/path": size, …}, …what the writer records (source, revision, hashes…)}
Markers written before this format have no "kind": they still count when their files check out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from camp.runtime.errors import CampError

MARKER = ".camp-complete"
FORMAT = 1


# ------------------------------------------------------------------------------------------ small JSON files

def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MB blocks (weights, tokenizers, submissions): what markers record."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from `path`, or {} when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON atomically (temp file + rename): readers see the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ the marker
def files(folder: str | os.PathLike) -> dict[str, int]:
    """{relative path: size} of every file in `folder`, hidden ones (bookkeeping, the marker) left out."""
    folder = Path(folder)
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = f.stat().st_size
    return out


def mark(folder: str | os.PathLike, kind: str, **info) -> dict:
    """Record `folder` as complete: written last, after every file is in place. Returns what was written."""
    folder = Path(folder)
    listed = files(folder)
    if not listed:
        raise CampError(f"{folder} holds no files: nothing to mark complete")
    data = {"camp_marker": FORMAT, "kind": kind, **info, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": listed}
    write_json(folder / MARKER, data)
    return data


def read(folder: str | os.PathLike) -> dict | None:
    """The marker's content, or None when there is none."""
    data = read_json(Path(folder) / MARKER)
    return data or None


def is_complete(folder: str | os.PathLike, kind: str | None = None, **expect) -> bool:
    """True when `folder` carries a marker (of `kind`, recording `expect`'s values) and every file it lists is
    there with its size."""
    folder = Path(folder)
    data = read(folder)
    if not data or not isinstance(data.get("files"), dict) or not data["files"]:
        return False
    if kind is not None and data.get("kind", kind) != kind:  # legacy markers have no kind
        return False
    if any(data.get(k) != v for k, v in expect.items()):
        return False
    for rel, size in data["files"].items():
        try:
            if (folder / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


# ------------------------------------------------------------------------------------------ building in place
def tmp_sibling(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def clean_leftovers(folder: str | os.PathLike) -> None:
    """Remove temporary siblings of `folder` left by builds whose process is gone."""
    folder = Path(folder)
    for tmp in [*folder.parent.glob(f".{folder.name}.tmp-*"), *folder.parent.glob(f".{folder.name}.old-*")]:
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[-1].split("-")[0]) if ".tmp-" in tmp.name else None
        except ValueError:
            pid = None
        if pid is not None and pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # its builder is still at work
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif pid == os.getpid():
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def install(tmp: str | os.PathLike, folder: str | os.PathLike, *, replace: bool = False) -> Path:
    """Move the finished, marked `tmp` into place as `folder` (one rename). An existing incomplete folder (a crash)
    is replaced; a complete one only with replace=True — never silently."""
    tmp, folder = Path(tmp), Path(folder)
    if not is_complete(tmp):
        raise CampError(f"{tmp} is not marked complete; camp installs only finished folders")
    if folder.exists() or folder.is_symlink():
        if is_complete(folder) and not replace:
            raise CampError(f"{folder} is already complete; camp does not overwrite it")
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, folder)
    return folder


@contextlib.contextmanager
def building(folder: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Build `folder` in a temporary sibling: yields it; when the block ends normally the caller must have marked it
    (mark(tmp, …)), and it is installed; on any error the temporary folder is removed and `folder` is untouched.

        with markers.building(out) as tmp:
            write_files(tmp)
            markers.mark(tmp, "merged", base=str(base))
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(folder)
    tmp = tmp_sibling(folder)
    tmp.mkdir()
    try:
        yield tmp
        install(tmp, folder, replace=replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
