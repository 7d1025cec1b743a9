"""What an evaluation asks: the course sets (assets/datasets/), a student's .jsonl/.csv file (checked line by
line: DataError names file:line:field), or an OpenCompass dataset config whose data is on this machine.

Scoring: multiple-choice sets by OpenCompass's option matcher (metric "accuracy"); question-answer sets by
"contains" (metric "contains"): after normalisation (Unicode NFKC, lower case, spaces and punctuation removed)
some reference answer must appear inside the reply — chat models answer in sentences, so exact match would mark
"我是小助手。" wrong for the answer "小助手".
"""

from __future__ import annotations

import ast
import csv
import difflib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError

COURSE_SETS = "datasets"  # folder under assets/
MCQ_METRIC = "accuracy"
QA_METRIC = "contains"
SELF_COGNITION = "self_cognition_check"
NAME_PLACEHOLDER = "{name}"
DATA_SUFFIXES = (".jsonl", ".csv")
OPENCOMPASS_DATA_HINT = (
    "get OpenCompass's data archive (OpenCompassData-core-*.zip from the OpenCompass GitHub releases page) and "
    "unzip it so that {root}/data/ holds it, or point COMPASS_DATA_CACHE at the folder that holds data/; "
    "with a ModelScope connection you can instead set DATASET_SOURCE=ModelScope"
)

# Max new tokens per answer. The tiny model stops by itself after a sentence; real chat models may reason
# before they name an option, so GPU profiles allow more.


# ================================================================================== datasets
@dataclass
class DatasetSpec:
    name: str  # the abbr OpenCompass shows (unique in one run)
    kind: str  # "mcq" | "qa" | "opencompass"
    source: str  # what the user gave
    description: str = ""
    records: list[dict] = field(default_factory=list)  # mcq/qa: checked records, ready to write
    options: list[str] = field(default_factory=list)  # mcq: option letters
    oc_module: str = ""  # opencompass: "opencompass.configs.datasets.ceval.ceval_gen"
    oc_vars: list[str] = field(default_factory=list)  # opencompass: ["ceval_datasets"]
    data_root: str | None = None  # opencompass: COMPASS_DATA_CACHE for the run
    path: Path | None = None  # mcq/qa: the file written into the run folder

    @property
    def questions(self) -> int | None:
        return len(self.records) if self.kind in ("mcq", "qa") else None

    @property
    def metric(self) -> str | None:
        return {"mcq": MCQ_METRIC, "qa": QA_METRIC}.get(self.kind)


def _course_index() -> dict:
    return json.loads((config.assets_dir() / COURSE_SETS / "index.json").read_text(encoding="utf-8"))


def list_datasets() -> list[dict]:
    """The course sets shipped in assets/datasets/: name, kind, questions, metric, description."""
    out = []
    for name, info in _course_index().items():
        path = config.assets_dir() / COURSE_SETS / info["file"]
        n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        out.append({
            "name": name,
            "kind": info["kind"],
            "questions": n,
            "metric": MCQ_METRIC if info["kind"] == "mcq" else QA_METRIC,
            "needs_name": bool(info.get("needs_name")),
            "path": str(path),
            "description": info["description"],
        })
    return out


def self_cognition_check(name: str, path: str | os.PathLike | None = None) -> Path:
    """Write the self-cognition check set for assistant `name` as a QA .jsonl (default: a file in the runs
    folder) and return its path. Each question about who the assistant is expects a reply containing `name`."""
    records = _self_cognition_records(name)
    if path is None:
        safe = re.sub(r"[^\w.-]+", "_", name).strip("_") or "assistant"
        path = config.runs_dir() / "datasets" / f"{SELF_COGNITION}-{safe}.jsonl"
    path = Path(path)
    _write_jsonl(path, records)
    return path


def _self_cognition_records(name) -> list[dict]:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n\t"):
        raise CampError(f"{SELF_COGNITION}: the assistant's name must be one line of text, got {name!r} — e.g. "
                        "evaluate(..., assistant_name='小助手') or `-d self_cognition_check:小助手`")
    name = name.strip()
    template = config.assets_dir() / COURSE_SETS / _course_index()[SELF_COGNITION]["file"]
    rows = [json.loads(line) for line in template.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"question": r["question"], "answer": r["answer"].replace(NAME_PLACEHOLDER, name)} for r in rows]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


# ------------------------------------------------------------------ custom files: read and check
def _rows(path: Path) -> tuple[list[tuple[str, object]], list[str]]:
    """[(where "file:line", raw row)] from a .jsonl or .csv file, and problems reading it."""
    name = str(path)
    if not path.is_file():
        return [], [f"{name}: no such file" if not path.exists() else f"{name}: not a file"]
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM some Windows editors (and Excel's CSV export) add
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        for n, line in enumerate(data.split(b"\n"), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return [], [f"{name}:{n}: not UTF-8 text — save the file as UTF-8"]
        return [], [f"{name}: not UTF-8 text — save the file as UTF-8"]
    if not text.strip():
        return [], [f"{name}: no questions (the file is empty)"]
    rows: list[tuple[str, object]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
            line_no = reader.line_num
            for raw in reader:
                where = f"{name}:{line_no + 1}"
                line_no = reader.line_num
                if not any(c.strip() for c in raw):
                    continue
                if len(raw) != len(header):
                    rows.append((where, f"has {len(raw)} cells, the header has {len(header)}"))
                    continue
                rows.append((where, dict(zip(header, raw, strict=True))))
        except csv.Error as exc:
            return rows, [f"{name}:{reader.line_num}: not valid CSV ({exc})"]
        return rows, []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{name}:{n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            hint = " — one question per line in a .jsonl file" if exc.msg.startswith("Extra data") else ""
            rows.append((f"{name}:{n}", f"invalid JSON: {exc.msg} (column {exc.colno}){hint}"))
    return rows, []


def _text(value) -> str | None:
    """A cell as text (numbers are fine: CSV has no types), or None when missing/empty/not text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _kind_of(row: dict) -> str | None:
    if "A" in row and "B" in row:
        return "mcq"
    if "question" in row and "answer" in row:
        return "qa"
    return None


def load_questions(path: str | os.PathLike) -> tuple[str, list[dict], list[str]]:
    """Read and check a custom set: ("mcq"|"qa", clean records, option letters). Raises DataError listing
    every bad record as FILE:LINE: field 'x': problem.

    MCQ: question, A, B, (C, D, …), answer — answer is one of the option letters (any case).
    QA:  question, answer — answer is a string, or a list of acceptable strings (.jsonl)."""
    from camp.data.records import DataError

    path = Path(path).expanduser()
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise DataError(f"{path}: a question set must be a .jsonl (one JSON object per line) or a .csv file "
                        "with the columns question, A, B, C, D, answer (multiple choice) or question, answer")
    rows, problems = _rows(path)
    if problems:
        raise DataError(problems)
    if not rows:
        raise DataError(f"{path}: no questions in the file")
    first = next((r for _, r in rows if isinstance(r, dict)), None)
    if first is None:  # not one readable record: say what is wrong with each line
        raise DataError([f"{w}: {r}" if isinstance(r, str) else f"{w}: a question must be a JSON object"
                         for w, r in rows])
    kind = _kind_of(first)
    if kind is None:
        where = next((w for w, r in rows if isinstance(r, dict)), rows[0][0])
        keys = ", ".join(repr(k) for k in list(first)[:8]) or "none"
        raise DataError(f"{where}: neither a multiple-choice record (question, A, B, C, D, answer) nor a "
                        f"question-answer record (question, answer); keys: {keys}")
    options: list[str] = []
    if kind == "mcq":
        for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if letter not in first:
                break
            options.append(letter)
    records: list[dict] = []
    for where, row in rows:
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: a question must be a JSON object, not {type(row).__name__}")
            continue
        bad = []
        question = _text(row.get("question"))
        if question is None:
            bad.append(("question", "missing or empty"))
        if kind == "mcq":
            rec = {"question": question}
            for letter in options:
                rec[letter] = _text(row.get(letter))
                if rec[letter] is None:
                    bad.append((letter, "missing or empty option"))
            extra = [k for k in row if len(k) == 1 and k.isupper() and k not in options and _text(row.get(k))]
            if extra:
                bad.append((extra[0], f"this set has options {options[0]}–{options[-1]} (from its first "
                                      "question); give every question the same options"))
            ans = _text(row.get("answer"))
            if ans is None:
                bad.append(("answer", "missing or empty"))
            elif ans.upper() not in options:
                bad.append(("answer", f"{ans!r} is not one of {', '.join(options)}"))
            else:
                rec["answer"] = ans.upper()
        else:
            raw = row.get("answer")
            answers = raw if isinstance(raw, list) else [raw]
            clean = [_text(a) for a in answers]
            if not answers or any(a is None for a in clean):
                bad.append(("answer", "missing or empty (a string, or a list of acceptable strings)"))
            rec = {"question": question, "answer": clean if isinstance(raw, list) else clean[0]}
        if bad:
            problems += [f"{where}: field '{f}': {p}" for f, p in bad]
        else:
            records.append(rec)
    if problems:
        raise DataError(problems)
    if kind == "qa" and any(isinstance(r["answer"], list) for r in records):
        for r in records:  # one column type for the whole set (OpenCompass builds an Arrow table from it)
            if not isinstance(r["answer"], list):
                r["answer"] = [r["answer"]]
    return kind, records, options


# ------------------------------------------------------------------ OpenCompass dataset configs

def opencompass_package() -> Path:
    """The opencompass package folder in the opencompass env (found without importing it: ~14 s)."""
    from camp.runtime import envs

    found = envs.find_package("opencompass", "opencompass")
    if found is None:
        raise CampError(f"opencompass is not importable in its env ({envs.python('opencompass')}) — run "
                        "`camp env create opencompass --force`")
    return found


def _oc_config_files(pkg: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted((pkg / "configs" / "datasets").rglob("*.py")):
        if p.name != "__init__.py":
            out.setdefault(p.stem, []).append(p)
    return out


def _dataset_vars(tree: ast.Module) -> list[str]:
    """Top-level names ending in _datasets (assigned, or imported inside `with read_base():`)."""
    names: list[str] = []

    def visit(stmts):
        for node in stmts:
            if isinstance(node, ast.With):
                visit(node.body)
            elif isinstance(node, ast.ImportFrom):
                names.extend(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Assign):
                names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.append(node.target.id)

    visit(tree.body)
    out = []
    for n in names:
        if n.endswith("_datasets") and n not in out:
            out.append(n)
    return out


def _data_paths(file: Path, pkg: Path, depth: int = 0) -> list[str]:
    """The `path='…'` strings of a dataset config and of the configs it imports (where its data lives)."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "path" and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            found.append(node.value.value)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "path" and isinstance(v, ast.Constant) \
                        and isinstance(v.value, str):
                    found.append(v.value)
        elif isinstance(node, ast.ImportFrom) and depth < 3:
            if node.level:
                base = file.parent
                for _ in range(node.level - 1):
                    base = base.parent
                target = base.joinpath(*(node.module or "").split(".")) if node.module else None
            elif node.module and node.module.startswith("opencompass.configs."):
                target = pkg.parent.joinpath(*node.module.split("."))
            else:
                target = None
            if target is not None and target.with_suffix(".py").is_file():
                found += _data_paths(target.with_suffix(".py"), pkg, depth + 1)
    return list(dict.fromkeys(found))


def _datasets_mapping(pkg: Path) -> dict:
    """OpenCompass's DATASETS_MAPPING (dataset id → local folder), read without importing opencompass."""
    f = pkg / "utils" / "datasets_info.py"
    try:
        tree = ast.parse(f.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DATASETS_MAPPING"
                                                for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return {}
    return {}


def _data_roots() -> list[Path]:
    """Where OpenCompass looks for data: $COMPASS_DATA_CACHE, else its default ~/.cache/opencompass."""
    env = os.environ.get("COMPASS_DATA_CACHE")
    if env:
        return [Path(env).expanduser()]
    return [Path.home() / ".cache" / "opencompass"]


def opencompass_dataset(name: str, pkg: Path | None = None) -> DatasetSpec:
    """An OpenCompass dataset config by name (e.g. "ceval_gen"), checked to have its data on this machine."""
    pkg = pkg or opencompass_package()
    files = _oc_config_files(pkg)
    if name not in files:
        course = [d["name"] for d in list_datasets()]
        near = difflib.get_close_matches(name, course, n=1, cutoff=0.6)
        close = difflib.get_close_matches(name, list(files), n=4, cutoff=0.6)
        hint = f" — did you mean {near[0]}?" if near else ""
        hint += f"; close OpenCompass configs: {', '.join(close)}" if close else ""
        raise CampError(f"unknown dataset {name!r}: not a course set ({', '.join(course)}), not a .jsonl/.csv file, "
                        f"and no OpenCompass dataset config {name}.py under {pkg / 'configs' / 'datasets'}{hint}")
    file = files[name][0]
    tree = ast.parse(file.read_text(encoding="utf-8"))
    variables = _dataset_vars(tree)
    if not variables:
        raise CampError(f"{file} defines no *_datasets list: give the config that does (e.g. {name}_gen)")
    module = ".".join(file.relative_to(pkg.parent).with_suffix("").parts)
    spec = DatasetSpec(name=name, kind="opencompass", source=name, oc_module=module, oc_vars=variables,
                       description=f"OpenCompass dataset config {module}")
    if os.environ.get("DATASET_SOURCE") in ("ModelScope", "HF"):
        return spec  # the data comes from the hub at run time
    mapping = _datasets_mapping(pkg)
    needed = []
    for p in _data_paths(file, pkg):
        local = mapping.get(p, {}).get("local", p) if isinstance(mapping.get(p), dict) else p
        needed.append(local)
    if not needed:
        return spec
    roots = _data_roots()
    for root in roots:
        missing = [p for p in needed if not (Path(p) if os.path.isabs(p) else root / p).exists()]
        if not missing:
            spec.data_root = str(root)
            return spec
    root = roots[0]
    first = missing[0]
    where = Path(first) if os.path.isabs(first) else (root / first)
    raise CampError(f"OpenCompass dataset {name} needs its data at {os.path.normpath(where)}, which is missing — "
                    + OPENCOMPASS_DATA_HINT.format(root=root))


# ------------------------------------------------------------------ datasets: resolve what the user gave
def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_.") or "x"


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 1
    while out in taken:
        i += 1
        out = f"{name}-{i}"
    taken.add(out)
    return out


def resolve_datasets(datasets, *, assistant_name: str | None = None, opencompass: bool = True
                     ) -> list[DatasetSpec]:
    """Check every dataset the user gave; nothing runs. Raises CampError/DataError on the first bad one.
    opencompass=False leaves OpenCompass config names unchecked (kind "opencompass", no module yet): they
    need the opencompass env, which may still have to be created."""
    if isinstance(datasets, (str, os.PathLike)):
        datasets = [datasets]
    if not datasets:
        raise CampError("no dataset given — name a course set (see camp.evaluation.list_datasets()), "
                        "a .jsonl/.csv file, or an OpenCompass dataset config such as ceval_gen")
    course = _course_index()
    specs: list[DatasetSpec] = []
    taken: set[str] = set()
    oc_pkg = None
    for item in datasets:
        s = os.fspath(item).strip() if isinstance(item, (str, os.PathLike)) else item
        if not isinstance(s, str) or not s:
            raise CampError(f"dataset {item!r}: give a course set name, a file path or an OpenCompass config name")
        base, _, arg = s.partition(":")
        if base in course and (not arg or base == SELF_COGNITION):
            info = course[base]
            if base == SELF_COGNITION:
                name = arg or assistant_name
                if not name:
                    raise CampError(f"{SELF_COGNITION} checks that replies contain the assistant's name: give it, "
                                    f"e.g. evaluate(..., assistant_name='小助手') or `-d {SELF_COGNITION}:小助手`")
                records, kind, options = _self_cognition_records(name), "qa", []
            else:
                kind, records, options = load_questions(config.assets_dir() / COURSE_SETS / info["file"])
            specs.append(DatasetSpec(name=_unique(base, taken), kind=kind, source=s, records=records,
                                     options=options, description=info["description"]))
            continue
        path = Path(s).expanduser()
        if path.suffix.lower() in (*DATA_SUFFIXES, ".json") or path.exists() or os.sep in s:
            kind, records, options = load_questions(path)
            specs.append(DatasetSpec(name=_unique(_safe(path.stem), taken), kind=kind, source=str(path),
                                     records=records, options=options,
                                     description=f"{'multiple-choice' if kind == 'mcq' else 'question-answer'} "
                                                 f"set from {path}"))
            continue
        if re.fullmatch(r"[A-Za-z0-9_]+", s):
            if not opencompass:
                specs.append(DatasetSpec(name=_unique(s, taken), kind="opencompass", source=s))
                continue
            oc_pkg = oc_pkg or opencompass_package()
            spec = opencompass_dataset(s, oc_pkg)
            spec.name = _unique(spec.name, taken)
            specs.append(spec)
            continue
        close = difflib.get_close_matches(base, list(course), n=2, cutoff=0.6)
        hint = f" — did you mean {' or '.join(close)}?" if close else ""
        raise CampError(f"unknown dataset {s!r}{hint} (course sets: {', '.join(course)}; or a .jsonl/.csv path; "
                        "or an OpenCompass config name like ceval_gen)")
    return specs
