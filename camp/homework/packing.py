"""Handing in and taking in: `submit` packs a student's notebook into one file, `collect` imports a folder of them.

A submission file is a zip, `<student>__<assignment>.zip`, holding the notebook and `manifest.json`:
    {"format": "camp-homework-1", "student": …, "assignment": …, "notebook": "<name>.ipynb",
     "camp_version": …, "python": …, "created": "2026-…Z", "release": <the released copy's id>,
     "files": {"<name>.ipynb": "<sha256>"}}
Made offline, uploaded anywhere (an LMS, a shared folder, e-mail). `collect` checks each one — the names, the
manifest, the hashes, the sizes, the notebook — and files it where nbgrader expects it:
`submitted/<student>/<assignment>/<notebook>.ipynb` + `timestamp.txt`. A bad file is rejected with a reason and
never stops the others. Plain notebooks named `<student>__<assignment>.ipynb` (or `<student>.ipynb` with one
assignment) are accepted too. Stdlib only.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from camp.homework.layout import FORMAT, ID, MANIFEST, Course, check_id, sha256
from camp.runtime.errors import CampError
from camp.runtime.i18n import t

MAX_NOTEBOOK_MB = 50  # a notebook with outputs; larger ones are refused (zip bombs, videos in outputs)
SEP = "__"


def _read_notebook(data: bytes, name: str) -> dict:
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CampError(f"{name} is not a notebook (not JSON: {exc})") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
        raise CampError(f"{name} is not a Jupyter notebook (nbformat 4)")
    return nb


# ------------------------------------------------------------------------------------------ submit
def submit(notebook: str | os.PathLike, *, student: str, assignment: str | None = None,
           out: str | os.PathLike | None = None) -> Path:
    """Pack `notebook` (executed, with its outputs) for hand-in; returns the zip's path. Works offline."""
    from camp import __version__

    path = Path(notebook)
    check_id(student, t("学号", "student id"))
    if not path.is_file():
        raise CampError(t(f"找不到笔记本 {path}", f"no notebook at {path}"))
    data = path.read_bytes()
    if len(data) > MAX_NOTEBOOK_MB << 20:
        raise CampError(t(f"{path} 超过 {MAX_NOTEBOOK_MB} MB：清掉大的输出（图片、长日志）再提交",
                          f"{path} is over {MAX_NOTEBOOK_MB} MB: clear large outputs (images, long logs) first"))
    nb = _read_notebook(data, path.name)
    info = nb.get("metadata", {}).get("camp_homework", {})
    assignment = assignment or info.get("assignment")
    if not assignment:
        raise CampError(t(f"{path} 不是发布的作业笔记本（没有作业名）— 用 --assignment 指定",
                          f"{path} is not a released homework notebook (no assignment name) — pass --assignment"))
    check_id(assignment, t("作业名", "assignment"))
    name = f"{info.get('notebook') or path.stem}.ipynb"
    if not any(c.get("execution_count") for c in nb["cells"] if c.get("cell_type") == "code"):
        print(t(f"注意：{path.name} 没有运行过（没有输出）。评分时会重新运行，但先自己运行一遍能看到公开测试的结果。",
                f"note: {path.name} was never run (no outputs). Grading runs it again, but running it first shows "
                f"you the visible tests' results."))
    manifest = {"format": FORMAT, "student": student, "assignment": assignment, "notebook": name,
                "camp_version": __version__, "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "release": info.get("release"),
                "files": {name: sha256(path)}}
    target = Path(out) if out else Path.cwd()
    if target.is_dir() or not target.suffix:
        target = target / f"{student}{SEP}{assignment}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        z.writestr(name, data)
    tmp.replace(target)
    return target


# ------------------------------------------------------------------------------------------ collect
@dataclass
class Collected:
    accepted: list[dict] = field(default_factory=list)  # {student, assignment, file, created}
    rejected: list[dict] = field(default_factory=list)  # {file, reason}
    replaced: list[dict] = field(default_factory=list)  # older files from the same student, not used

    def __str__(self) -> str:
        lines = [t(f"收到 {len(self.accepted)} 份作业，拒收 {len(self.rejected)} 份",
                   f"accepted {len(self.accepted)} submissions, rejected {len(self.rejected)}")]
        lines += [f"  ✗ {r['file']}: {r['reason']}" for r in self.rejected]
        lines += [f"  · {r['file']}: " + t("同一学生有更新的提交，未使用", "a newer submission from the same student "
                                         "was used") for r in self.replaced]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected, "replaced": self.replaced}


def _from_zip(path: Path) -> tuple[dict, dict[str, bytes]]:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CampError(f"not a readable zip ({exc})") from exc
    with z:
        names = z.namelist()
        for info in z.infolist():
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts or info.filename.startswith("/") or "\\" in info.filename:
                raise CampError(f"unsafe path inside the zip: {info.filename!r}")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise CampError(f"a symbolic link inside the zip: {info.filename!r}")
            if info.file_size > MAX_NOTEBOOK_MB << 20:
                raise CampError(f"{info.filename} is over {MAX_NOTEBOOK_MB} MB unpacked")
        if MANIFEST not in names:
            raise CampError("no manifest.json: make the file with `camp homework submit`")
        try:
            manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CampError(f"manifest.json is not JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CampError(f"manifest.json is not a {FORMAT} manifest")
        files = manifest.get("files")
        if not isinstance(files, dict) or set(files) != set(names) - {MANIFEST}:
            raise CampError("the zip's files and the manifest's list differ")
        blobs = {name: z.read(name) for name in files}
    import hashlib

    for name, digest in files.items():
        if hashlib.sha256(blobs[name]).hexdigest() != digest:
            raise CampError(f"{name} does not match its hash in the manifest (changed after packing)")
    return manifest, blobs


def _from_notebook(path: Path, released: list[str], assignment: str | None) -> tuple[dict, dict[str, bytes]]:
    stem = path.stem
    if SEP in stem:
        student, aid = stem.split(SEP, 1)
    elif assignment or len(released) == 1:
        student, aid = stem, assignment or released[0]
    else:
        raise CampError(f"name it <student>{SEP}<assignment>.ipynb (or pass --assignment)")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
    return {"student": student, "assignment": aid, "created": created, "notebook": None}, {path.name: path.read_bytes()}


def collect(folder: str | os.PathLike, *, course: Course | str | None = None, assignment: str | None = None) -> Collected:
    """Import every submission in `folder` (zips from `camp homework submit`, or notebooks) into the course."""
    course = course if isinstance(course, Course) else Course.at(course)
    folder = Path(folder)
    if not folder.is_dir():
        raise CampError(t(f"没有文件夹 {folder}", f"no folder {folder}"))
    released = course.assignments()
    if not released:
        raise CampError(t(f"{course.root} 还没有发布作业 — 先运行 `camp homework release`",
                          f"nothing is released in {course.root} — run `camp homework release` first"))
    out = Collected()
    chosen: dict[tuple[str, str], dict] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(folder))
        try:
            if path.is_symlink():
                raise CampError("a symbolic link")
            if path.suffix == ".zip":
                manifest, blobs = _from_zip(path)
            elif path.suffix == ".ipynb":
                manifest, blobs = _from_notebook(path, released, assignment)
            else:
                raise CampError("not a .zip or .ipynb")
            student = manifest.get("student")
            aid = manifest.get("assignment")
            if not isinstance(student, str) or not ID.match(student) or ".." in student:
                raise CampError(f"student id {student!r} is not valid (letters, digits, _ - .)")
            if aid not in released:
                raise CampError(f"assignment {aid!r} is not released here ({', '.join(released)})")
            if assignment and aid != assignment:
                raise CampError(f"for assignment {aid}, not {assignment}")
            expected = {p.name for p in (course.release_dir / aid).glob("*.ipynb")}
            notebooks = {}
            for name, data in blobs.items():
                if not name.endswith(".ipynb"):
                    raise CampError(f"{name}: only notebooks are handed in")
                target = manifest.get("notebook") or (name if name in expected else None)
                if target is None and len(expected) == 1:
                    target = next(iter(expected))
                if target not in expected:
                    raise CampError(f"{name}: the assignment's notebooks are {', '.join(sorted(expected))}")
                _read_notebook(data, name)
                notebooks[target] = data
            entry = {"student": student, "assignment": aid, "file": rel, "created": manifest.get("created") or "",
                     "notebooks": notebooks}
        except CampError as exc:
            out.rejected.append({"file": rel, "reason": str(exc)})
            continue
        key = (student, aid)
        if key in chosen:
            older, newer = sorted([chosen[key], entry], key=lambda e: e["created"])
            out.replaced.append({"file": older["file"]})
            entry = newer
        chosen[key] = entry
    for (student, aid), entry in sorted(chosen.items()):
        dest = course.submitted / student / aid
        tmp = dest.with_name(f".{aid}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in entry.pop("notebooks").items():
            (tmp / name).write_bytes(data)
        # nbgrader's own timestamp format, read by its late-submission logic
        stamp = entry["created"].replace("T", " ").replace("Z", " UTC") if entry["created"] else ""
        (tmp / "timestamp.txt").write_text(stamp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)
        out.accepted.append(entry)
    return out
