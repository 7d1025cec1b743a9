"""Evaluation with OpenCompass: `camp.evaluate(models, datasets)` and `camp eval`.

    r = camp.evaluate(["tiny", "/path/to/merged"], ["self_cognition_check", "internlm_toolchain_mcq"],
                      assistant_name="小助手")
    r.table            # pandas DataFrame: model, dataset, metric, score (0-100)
    r.plot()           # grouped bar chart
    r.answers("tiny", "self_cognition_check")   # what the model actually said

What happens, in order:
  1. everything is checked BEFORE OpenCompass starts (its import alone takes ~14 s): each model resolves to a
     complete local folder (camp.models.resolve: catalogue names, registered names, folders) or a reachable
     OpenAI-compatible endpoint; each dataset is a course set (assets/datasets/), a student's .jsonl/.csv
     file (validated line by line: DataError names file:line:field), or an OpenCompass dataset config
     whose data is present;
  2. a readable, commented OpenCompass config is written into the run folder ($CAMP_HOME/runs/<ts>-eval/
     config.py), with the checked data copied beside it (data/) and camp's QA scorer (camp_scoring.py);
  3. OpenCompass runs it in the opencompass env as a camp Job (progress in questions); settings come from
     the profile: on CPU num_gpus=0 and `--debug` (in-process, ~3x faster than a subprocess per task), on
     GPUs bf16/fp16, bigger batches and one worker per GPU;
  4. success is judged from the files, never from the exit status alone (OpenCompass exits 0 when
     inference failed and prints '-' in its summary): every model needs predictions for every dataset and
     a number in summary_<ts>.csv; otherwise EvalError names the model, the dataset and the log lines.

Scoring: multiple-choice sets by OpenCompass's option matcher (metric "accuracy": the letter the reply
chooses); question-answer sets by "contains" (metric "contains"): after normalisation (Unicode NFKC, lower
case, spaces and punctuation removed) some reference answer must appear inside the reply — chat models
answer in sentences, so exact match would mark "我是小助手。" wrong for the answer "小助手".
"""

from __future__ import annotations

import ast
import csv
import difflib
import io
import json
import math
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from camp import config
from camp.errors import CampError

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
MAX_OUT_LEN = {"cpu": 128, "cuda": 512}
# Questions per forward pass, by profile (7B bf16 + KV cache of a batch of ~1k-token sequences fits these).
BATCH_SIZE = {"cpu-tiny": 8, "gpu-8g": 8, "gpu-24g": 16, "gpu-40g": 32, "gpu-80g": 64}


class EvalError(CampError):
    """The evaluation ran but some model × dataset has no score. `.result` holds what did succeed (or None)."""

    def __init__(self, message: str, result: EvalResult | None = None):
        self.result = result
        super().__init__(message)


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
    from camp.data import DataError

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
_oc_dir_cache: dict[str, Path] = {}


def opencompass_package() -> Path:
    """The opencompass package folder in the opencompass env (found without importing it: ~14 s)."""
    from camp import envs

    py = str(envs.python("opencompass"))
    if py not in _oc_dir_cache:
        code = "import importlib.util as u; s = u.find_spec('opencompass'); print(list(s.submodule_search_locations)[0])"
        r = envs.run("opencompass", [py, "-c", code], capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.strip():
            raise CampError(f"opencompass is not importable in its env ({py}): {r.stderr.strip()[-300:]} — "
                            "run `camp env create opencompass --force`")
        _oc_dir_cache[py] = Path(r.stdout.strip().splitlines()[-1])
    return _oc_dir_cache[py]


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


def _parse_endpoint(s: str) -> tuple[str, str | None]:
    url, _, model = s.partition("#")
    url = url.rstrip("/")
    if re.fullmatch(r"https?://[^/]+", url):
        url += "/v1"  # OpenAI-compatible servers (LMDeploy, transformers serve, vLLM) answer under /v1
    return url, (model or None)


def _http_json(url: str, api_key: str | None, body: dict | None = None, timeout: float = 5.0):
    """(status, parsed JSON or None) of a GET (or a POST of `body`); CampError when nothing answers."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {api_key or 'EMPTY'}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers)
    # a server on this machine must not be reached through an HTTP proxy from the environment
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        base = url.rsplit("/", 1)[0].removesuffix("/chat")
        raise CampError(f"endpoint {base} is not reachable ({reason}) — is the server running? Start one with "
                        "`camp serve MODEL` (LMDeploy on GPU, transformers serve on CPU)") from None
    try:
        return status, json.loads(raw.decode("utf-8", "replace") or "null")
    except ValueError:
        return status, None


def _detail(body) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for k in ("detail", "message", "error"):
            if body.get(k):
                return str(body[k])
    return "no details"


def _endpoint_spec(base_url: str, model: str | None, api_key: str | None, tokenizer: str | None) -> ModelSpec:
    status, body = _http_json(base_url + "/models", api_key)
    if status in (401, 403):
        raise CampError(f"endpoint {base_url} refused the API key ({status}) — pass the server's key with "
                        "api_key=… / --api-key")
    if model is None:
        ids = [m.get("id") for m in (body or {}).get("data", []) if isinstance(m, dict)] if isinstance(body, dict) else []
        if not ids:
            raise CampError(f"endpoint {base_url} lists no models — name the one it serves: {base_url}#MODEL "
                            "(for `transformers serve`: the model folder it was started with)")
        model = ids[0]
    # One 1-token request: a wrong model name (transformers serve wants its exact folder path) fails here,
    # in a second, instead of as a retry loop inside OpenCompass.
    status, body = _http_json(base_url + "/chat/completions", api_key, timeout=120, body={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    if status in (401, 403):
        raise CampError(f"endpoint {base_url} refused the API key ({status}) — pass the server's key with "
                        "api_key=… / --api-key")
    if status >= 400:
        raise CampError(f"endpoint {base_url} rejected a request for model {model!r} ({status}: {_detail(body)}) — "
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
    elif Path(model).is_dir():
        spec.tokenizer = str(Path(model).resolve())
    else:
        from camp import models

        local = None
        try:
            local = models.find_local(models.get(model))
        except CampError:
            pass
        if local:
            spec.tokenizer = str(local[0])
        else:
            from camp import tiny

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

    s = os.fspath(item).strip()
    try:
        listed = models.get(s)
    except CampError:
        listed = None
    folder_given = models._pathlike(s) or (listed is None and Path(s).expanduser().is_dir())
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
            base, model = _parse_endpoint(str(m.base_url))
            specs.append(_endpoint_spec(base, getattr(m, "model", None) or model,
                                        getattr(m, "api_key", None) or api_key, tokenizer))
        elif isinstance(m, str) and re.match(r"https?://", m.strip()):
            base, model = _parse_endpoint(m.strip())
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


# ================================================================================== settings
@dataclass
class Settings:
    profile: str
    device: str  # cpu | cuda
    dtype: str
    num_gpus: int  # per model task
    batch_size: int
    max_out_len: int
    workers: int  # tasks in parallel (one per GPU)
    debug: bool  # run tasks in the OpenCompass process

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def plan(profile=None, models_: list[ModelSpec] | None = None) -> Settings:
    """OpenCompass settings for this machine: CPU → num_gpus=0, in-process (--debug), small batches;
    GPUs → the profile's dtype, bigger batches, one worker per GPU (several GPUs per model when it needs them)."""
    from camp import hardware, models

    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    if prof.device == "cpu":
        return Settings(prof.name, "cpu", "float32", 0, BATCH_SIZE["cpu-tiny"], MAX_OUT_LEN["cpu"], 1, True)
    need_gpus = 1
    for m in models_ or []:
        if m.kind != "local":
            continue
        need = None
        try:
            need = models.get(m.name).memory_gb.get("chat")
        except CampError:
            pass
        if need is None:  # bf16 weights + ~20 % for activations and KV cache
            need = m.weights_gb * 1.2
        if need > prof.memory_gb:
            n = math.ceil(need / prof.memory_gb)
            if n > prof.gpu_count:
                raise CampError(f"{m.name} needs about {need:.0f} GB of GPU memory; the {prof.name} profile has "
                                f"{prof.gpu_count} × {prof.memory_gb} GB — use a smaller model or a bigger slice")
            need_gpus = max(need_gpus, n)
    workers = max(1, prof.gpu_count // need_gpus)
    return Settings(prof.name, "cuda", prof.dtype, need_gpus, BATCH_SIZE[prof.base], MAX_OUT_LEN["cuda"],
                    workers, debug=workers == 1)


# ================================================================================== the config file
SCORING_MODULE = "camp_scoring"
SCORING_SOURCE = '''"""camp's scorer for question-answer sets (imported by config.py beside this file).

A reply counts as correct when it CONTAINS one of the reference answers after normalisation: Unicode NFKC,
lower case, and every space and punctuation mark removed ("Xiao Zhu-Shou!" -> "xiaozhushou"). Chat models
answer in sentences, so exact match would mark "我是小助手。" wrong for the answer "小助手".
"""
import re
import unicodedata

from opencompass.openicl.icl_evaluator import BaseEvaluator


def normalise(text):
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return re.sub(r"[\\W_]+", "", text)


class ContainsEvaluator(BaseEvaluator):
    def score(self, predictions, references):
        if len(predictions) != len(references):
            return {"error": "predictions and references differ in length"}
        right, details = 0, []
        for pred, ref in zip(predictions, references):
            answers = ref if isinstance(ref, list) else [ref]
            keys = [k for k in (normalise(a) for a in answers) if k]
            ok = any(k in normalise(pred) for k in keys)
            right += ok
            details.append({"pred": pred, "answer": answers, "correct": ok})
        return {"contains": 100.0 * right / len(predictions) if predictions else 0.0, "details": details}
'''


def _lit(v) -> str:
    """A Python literal for the config (dict(...) style, the way OpenCompass configs are written)."""
    if isinstance(v, dict):
        return "dict(" + ", ".join(f"{k}={_lit(x)}" for k, x in v.items()) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, Path):
        return repr(str(v))
    return repr(v)


def command(config_path: Path, work_dir: Path, s: Settings) -> list[str]:
    """The OpenCompass command line (after the env's python)."""
    cmd = ["-m", "opencompass.cli.main", str(config_path), "-w", str(work_dir)]
    if s.debug:
        cmd.append("--debug")
    else:
        cmd += ["--max-num-workers", str(s.workers)]
    return cmd


def run_environment(run_dir: Path, models_: list[ModelSpec], datasets: list[DatasetSpec], s: Settings
                    ) -> dict[str, str]:
    """Environment variables the OpenCompass process needs (the config's header lists them too)."""
    env = {"PYTHONPATH": str(run_dir), "TOKENIZERS_PARALLELISM": "false"}
    roots = {d.data_root for d in datasets if d.data_root}
    if roots:
        env["COMPASS_DATA_CACHE"] = sorted(roots)[0]
    if os.environ.get("DATASET_SOURCE") != "HF":
        env["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "1")  # local folders only: never wait on the hub
    if s.device == "cpu" and "OMP_NUM_THREADS" not in os.environ and all(m.weights_gb < 0.2 for m in models_):
        env["OMP_NUM_THREADS"] = "1"  # tiny models on a few cores: more threads were 10-30x slower
    if any(m.kind == "endpoint" for m in models_):
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
        env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in (no_proxy, "127.0.0.1", "localhost") if x)
        keys = {m.api_key for m in models_ if m.kind == "endpoint" and m.api_key not in (None, "", "EMPTY")}
        if keys:
            env["OPENAI_API_KEY"] = keys.pop()
    return env


def write_config(run_dir: Path, models_: list[ModelSpec], datasets: list[DatasetSpec], s: Settings,
                 *, limit: int | None = None) -> Path:
    """Write config.py (+ data/*.jsonl and camp_scoring.py) into run_dir; returns the config path."""
    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    for d in datasets:
        if d.kind in ("mcq", "qa"):
            d.path = data_dir / f"{d.name}.jsonl"
            _write_jsonl(d.path, d.records[:limit] if limit else d.records)
    if any(d.kind == "qa" for d in datasets):
        (run_dir / f"{SCORING_MODULE}.py").write_text(SCORING_SOURCE, encoding="utf-8")
    work_dir = run_dir / "outputs"
    cfg_path = run_dir / "config.py"
    env = run_environment(run_dir, models_, datasets, s)
    shown_env = {k: ("…" if k == "OPENAI_API_KEY" else v) for k, v in env.items()
                 if k in ("PYTHONPATH", "COMPASS_DATA_CACHE", "OPENAI_API_KEY", "OMP_NUM_THREADS")}

    L: list[str] = []
    w = L.append
    w(f"# OpenCompass config written by camp.evaluate() on {time.strftime('%Y-%m-%d %H:%M')} for the "
      f"{s.profile} profile.")
    w("# It is a plain OpenCompass config: `models` says what answers, `datasets` what is asked, `work_dir`")
    w("# where the answers (predictions/), scores (results/) and the summary table (summary/) go.")
    w("# Run it yourself in the opencompass env (exactly what camp ran):")
    w(f"#   cd {shlex.quote(str(run_dir))}")
    line = [f"{k}={shlex.quote(v)}" for k, v in shown_env.items()] + [
        "camp env run opencompass -- python", shlex.join(command(cfg_path.relative_to(run_dir), work_dir, s))]
    w("#   " + " ".join(line))
    if s.debug:
        w("# --debug runs every task inside this one process, one after another (on CPU ~3x faster than a")
        w("# subprocess per task, and errors are printed right away).")
    else:
        w(f"# --max-num-workers {s.workers}: {s.workers} tasks at once, {s.num_gpus} GPU(s) each.")
    w("")
    if any(d.kind == "opencompass" for d in datasets):
        w("from mmengine.config import read_base")
    kinds = {m.kind for m in models_}
    imports = [n for k, n in (("local", "HuggingFacewithChatTemplate"), ("endpoint", "OpenAISDK")) if k in kinds]
    w(f"from opencompass.models import {', '.join(imports)}")
    if any(d.kind == "qa" for d in datasets):
        w(f"from {SCORING_MODULE} import ContainsEvaluator  # camp's QA scorer: {SCORING_MODULE}.py beside this file")
    oc = [d for d in datasets if d.kind == "opencompass"]
    seen: dict[str, int] = {}
    for d in oc:
        for v in d.oc_vars:
            seen[v] = seen.get(v, 0) + 1
    alias = {(d.name, v): (f"{d.name}__{v}" if seen[v] > 1 else v) for d in oc for v in d.oc_vars}
    if oc:
        w("")
        w("with read_base():  # OpenCompass's own dataset configs")
        for d in oc:
            names = ", ".join(v if alias[d.name, v] == v else f"{v} as {alias[d.name, v]}" for v in d.oc_vars)
            w(f"    from {d.oc_module} import {names}")
    w("")
    w("models = [")
    for m in models_:
        if m.kind == "local":
            w(f"    # {m.name}: a local Hugging Face folder, prompted with its own chat template")
            kw = {"device_map": "cpu" if s.device == "cpu" else "auto", "torch_dtype": s.dtype}
            gen = {"do_sample": False}  # greedy: the same answers every run
            if m.remote_code:
                kw["trust_remote_code"] = True
                gen["use_cache"] = False  # remote modelling code of InternLM2's age breaks the KV cache on transformers 4.57
            w("    dict(")
            w("        type=HuggingFacewithChatTemplate,")
            w(f"        abbr={m.abbr!r},")
            w(f"        path={m.path!r},")
            w(f"        model_kwargs={_lit(kw)},")
            w(f"        generation_kwargs={_lit(gen)},")
            w(f"        max_out_len={s.max_out_len},  # new tokens per answer at most")
            w(f"        batch_size={s.batch_size},  # questions per forward pass")
            gpu_note = "CPU only" if s.num_gpus == 0 else "GPUs for this model's task"
            w(f"        run_cfg=dict(num_gpus={s.num_gpus}),  # {gpu_note}")
            w("    ),")
        else:
            w(f"    # {m.name}: an OpenAI-compatible endpoint")
            w("    dict(")
            w("        type=OpenAISDK,")
            w(f"        abbr={m.abbr!r},")
            w(f"        path={m.path!r},  # the model name the server expects")
            w(f"        openai_api_base={m.base_url!r},")
            key = "ENV" if m.api_key not in (None, "", "EMPTY") else "EMPTY"
            note = "read from $OPENAI_API_KEY" if key == "ENV" else "a local server accepts any key"
            w(f"        key={key!r},  # {note}")
            w(f"        tokenizer_path={m.tokenizer!r},  # counts prompt tokens locally (else a tiktoken download)")
            w("        temperature=0,  # greedy: the same answers every run")
            w("        query_per_second=16,  # a local server: no rate limit worth waiting for")
            w("        retry=2,")
            w(f"        max_out_len={s.max_out_len},")
            w(f"        batch_size={s.batch_size},  # requests in flight at once")
            w("        run_cfg=dict(num_gpus=0),  # the server holds the model; this side needs no GPU")
            w("    ),")
    w("]")
    w("")
    w("datasets = [")
    for d in datasets:
        if d.kind == "mcq":
            w(f"    # {d.name}: {len(d.path.read_text(encoding='utf-8').splitlines())} multiple-choice questions "
              f"({', '.join(d.options)}); score = accuracy of the chosen letter")
            w(f"    dict(abbr={d.name!r}, path={str(d.path)!r}, data_type='mcq', infer_method='gen'),")
        elif d.kind == "qa":
            w(f"    # {d.name}: {len(d.path.read_text(encoding='utf-8').splitlines())} questions; score = share of "
              "replies that contain the answer (ContainsEvaluator)")
            w(f"    dict(abbr={d.name!r}, path={str(d.path)!r}, data_type='qa', infer_method='gen',")
            w("         evaluator=ContainsEvaluator, evaluator_kwargs=dict()),")
        else:
            for v in d.oc_vars:
                w(f"    *{alias[d.name, v]},  # from {d.oc_module}")
    w("]")
    if limit and oc:
        w("")
        w(f"# limit={limit}: only the first {limit} questions of each OpenCompass dataset")
        for d in oc:
            for v in d.oc_vars:
                w(f"for _d in {alias[d.name, v]}:")
                w(f"    _d['reader_cfg']['test_range'] = '[0:{limit}]'")
        w("del _d")
    w("")
    w(f"work_dir = {str(work_dir)!r}")
    cfg_path.write_text("\n".join(L) + "\n", encoding="utf-8")
    return cfg_path


# ================================================================================== progress
class EvalProgress:
    """Job parser: questions answered so far, from OpenCompass's task lines and its tqdm batch bars."""

    _START = re.compile(r"Start inferencing \[(.+?)/(.+?)\]")
    _BAR = re.compile(r"(\d+)/(\d+) \[")

    def __init__(self, sizes: dict[tuple[str, str], int], names: dict[str, str] | None = None):
        self.sizes = sizes  # (model abbr, dataset abbr) -> questions
        self.names = names or {}
        self.done = 0  # questions of finished tasks
        self.current: tuple[str, str] | None = None

    def __call__(self, line: str, progress) -> None:
        m = self._START.search(line)
        if m:
            if self.current:
                self.done += self.sizes.get(self.current, 0)
            self.current = (m.group(1), m.group(2))
            progress.update(n=self.done, desc=f"{self.names.get(m.group(1), m.group(1))} · {m.group(2)}")
            return
        if "replica of evaluation" in line or "Start evaluating" in line:
            if self.current:
                self.done += self.sizes.get(self.current, 0)
                self.current = None
            progress.update(n=self.done, desc="scoring")
            return
        if line.lstrip().startswith(("Map", "Inferencing")) or "examples/s" in line:
            return  # dataset preprocessing, and an API model's per-request bar inside one batch
        b = self._BAR.search(line)
        if b and int(b.group(2)) > 0:
            k, total = int(b.group(1)), int(b.group(2))
            if self.current and self.current in self.sizes:
                size = self.sizes[self.current]
                progress.update(n=max(progress.n, self.done + min(size, round(size * k / total))))
            elif self.current is None and progress.total:  # without --debug: a bar over tasks
                progress.update(n=round(progress.total * k / total))


# ================================================================================== results
def latest_experiment(work_dir: Path, before: set[str] | None = None) -> Path | None:
    """The timestamped folder OpenCompass made under work_dir (the newest one not in `before`)."""
    if not work_dir.is_dir():
        return None
    dirs = sorted(p for p in work_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d{8}_\d{6}", p.name)
                  and p.name not in (before or set()))
    return dirs[-1] if dirs else None


def prediction_files(exp_dir: Path, known: set[str] | None = None) -> dict[str, dict[str, list[Path]]]:
    """{model abbr: {dataset abbr: [prediction files]}}. A dataset split over several workers is written in
    parts NAME_0.json, NAME_1.json …; `known` dataset names keep a name like quiz_1 from being read as a part."""
    out: dict[str, dict[str, list[Path]]] = {}
    root = exp_dir / "predictions"
    if not root.is_dir():
        return out
    known = known or set()
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        per: dict[str, list[tuple[int, Path]]] = {}
        for f in mdir.glob("*.json"):
            if f.name.startswith("tmp_"):
                continue  # OpenCompass's scratch file of an unfinished task
            m = re.fullmatch(r"(.+)_(\d+)", f.stem)
            if f.stem in known or not m or (mdir / f"{m.group(1)}.json").exists():
                per.setdefault(f.stem, []).append((-1, f))
            else:
                per.setdefault(m.group(1), []).append((int(m.group(2)), f))
        out[mdir.name] = {k: [f for _, f in sorted(v)] for k, v in sorted(per.items())}
    return out


def parse_summary(path: str | os.PathLike, names: dict[str, str] | None = None):
    """summary_<ts>.csv (dataset,version,metric,mode,<model abbr>…) → (DataFrame model/dataset/metric/score,
    [(model, dataset, metric)] that have no number: '-' means OpenCompass got no result)."""
    import pandas as pd

    names = names or {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = [r for r in reader if r]
    if not header or header[:4] != ["dataset", "version", "metric", "mode"]:
        raise CampError(f"{path}: not an OpenCompass summary (header {header!r})")
    model_cols = header[4:]
    records, missing = [], []
    for r in rows:
        r = r + [""] * (len(header) - len(r))
        dataset, _version, metric, _mode = r[:4]
        for col, raw in zip(model_cols, r[4:], strict=True):
            model = names.get(col, col)
            try:
                score = float(raw)
            except ValueError:
                score = float("nan")
                missing.append((model, dataset, metric))
            records.append({"model": model, "dataset": dataset, "metric": metric, "score": score})
    df = pd.DataFrame.from_records(records, columns=["model", "dataset", "metric", "score"])
    return df, missing


_NOISE = ("SlurmRunner is not used", "Default to dump eval details", "dump-eval-details", "is deprecated")
_INTERESTING = re.compile(r"Traceback|Error|Exception|error occurs|[Ff]ailed|No such file|not found|Killed|"
                          r"out of memory|CUDA", re.I)


_LOGGER_PREFIX = re.compile(r"^.*?\d\d:\d\d:\d\d - OpenCompass - (\w+) - (?:\S+ - \w+ - \d+ - )?")


def _clean(line: str) -> str:
    """A log line without tqdm debris and OpenCompass's logger prefix (so repeats collapse into one)."""
    line = line.rstrip().rsplit("\x1b[A", 1)[-1]  # tqdm's cursor-up: what follows is the real message
    return _LOGGER_PREFIX.sub(lambda m: f"OpenCompass {m.group(1)}: ", line)


def relevant_lines(text: str, limit: int = 12) -> list[str]:
    """The log lines that explain a failure: error lines, and the exception that closes the last traceback
    (with its continuation lines, e.g. which tensor had the wrong shape) — not the traceback's code lines."""
    lines = [_clean(ln) for ln in text.splitlines() if ln.strip() and not ln.startswith("[camp]")]
    tracebacks = [i for i, ln in enumerate(lines) if ln.startswith("Traceback")]
    last = tracebacks[-1] if tracebacks else len(lines)
    picked: list[str] = []
    for ln in lines[:last]:
        if not ln.startswith((" ", "\t")) and _INTERESTING.search(ln) and not any(n in ln for n in _NOISE) \
                and ln not in picked:
            picked.append(ln)
    if tracebacks:
        after = lines[last + 1:]
        k = next((i for i, ln in enumerate(after) if not ln.startswith((" ", "\t"))), None)
        if k is not None:
            picked.append(after[k])  # e.g. "RuntimeError: Error(s) in loading state_dict for Linear:"
            for ln in after[k + 1:k + 4]:
                if not ln.startswith("\t"):  # the message's own continuation lines are tab-indented
                    break
                picked.append(ln.strip())
    return picked[-limit:]


@dataclass
class EvalResult:
    table: object  # pandas DataFrame: model, dataset, metric, score
    run_dir: Path
    config_path: Path
    summary_csv: Path | None
    predictions: dict  # {model: {dataset: Path}}
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    _parts: dict = field(default_factory=dict, repr=False)  # {model: {dataset: [files]}}

    # -------------------------------------------------------------- reading
    def scores(self):
        """The table pivoted for reading: one row per dataset/metric, one column per model."""
        t = self.table.dropna(subset=["score"]) if len(self.table) else self.table
        if not len(t):
            return t
        p = t.pivot_table(index=["dataset", "metric"], columns="model", values="score", sort=False)
        cols = [m for m in self.models if m in p.columns] + [m for m in p.columns if m not in self.models]
        return p[cols]

    def score(self, model: str, dataset: str, metric: str | None = None) -> float:
        """One number (0–100), e.g. r.score("tiny", "self_cognition_check")."""
        t = self.table
        sel = t[(t["model"] == model) & (t["dataset"] == dataset)]
        if metric:
            sel = sel[sel["metric"] == metric]
        if sel.empty:
            raise CampError(f"no score for model {model!r} on {dataset!r}" + (f" ({metric})" if metric else "") +
                            f" — models: {', '.join(self.models)}; datasets: {', '.join(sorted(set(t['dataset'])))}")
        return float(sel["score"].iloc[0])

    def answers(self, model: str, dataset: str) -> list[dict]:
        """What the model said: [{"prompt", "prediction", "gold"}] in question order."""
        files = self._parts.get(model, {}).get(dataset)
        if not files:
            raise CampError(f"no predictions for {model!r} on {dataset!r} in {self.run_dir}")
        out = []
        for f in files:
            data = json.loads(Path(f).read_text(encoding="utf-8"))
            for k in sorted(data, key=lambda x: int(x) if str(x).isdigit() else 0):
                item = data[k]
                prompt = item.get("origin_prompt")
                if isinstance(prompt, list):  # chat turns: the last human turn is the question
                    prompt = "\n".join(str(t.get("prompt", "")) for t in prompt if isinstance(t, dict))
                out.append({"prompt": prompt, "prediction": item.get("prediction"), "gold": item.get("gold")})
        return out

    # -------------------------------------------------------------- showing
    def plot(self, ax=None, title: str | None = None):
        """Grouped bar chart: one group per dataset (and metric), one bar per model. Returns the Figure."""
        p = self.scores()
        if ax is None:
            from matplotlib.figure import Figure  # no pyplot: the figure shows once, as the returned value

            fig = Figure(figsize=(max(4.5, 1.6 * max(len(p), 1) * max(1, len(p.columns)) ** 0.5 + 2), 3.4))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        if len(p):
            labels = [d if len({m for _, m in p.index}) == 1 else f"{d}\n{m}" for d, m in p.index]
            n = len(p.columns)
            width = 0.8 / max(n, 1)
            for i, model in enumerate(p.columns):
                xs = [j + (i - (n - 1) / 2) * width for j in range(len(p))]
                bars = ax.bar(xs, p[model].tolist(), width, label=str(model))
                ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
            ax.set_xticks(range(len(p)), labels)
            legend = ax.legend(fontsize=8, loc="upper right" if n < 4 else "best")
            font = _cjk_font() if any(not str(x).isascii() for x in [*labels, *p.columns]) else None
            if font:  # Chinese model/dataset names: a font that has the glyphs, when this machine has one
                for t in [*ax.get_xticklabels(), *legend.get_texts()]:
                    t.set_fontfamily([font, "DejaVu Sans"])
        ax.set_ylim(0, 110)
        ax.set_ylabel("score (0–100)")
        ax.set_title(title or "OpenCompass: " + ", ".join(self.models))
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return fig

    def to_dict(self) -> dict:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.table.to_dict(orient="records")]
        return {
            "models": self.models,
            "datasets": self.datasets,
            "scores": rows,
            "run_dir": str(self.run_dir),
            "config": str(self.config_path),
            "summary_csv": str(self.summary_csv) if self.summary_csv else None,
            "predictions": {m: {d: str(p) for d, p in ds.items()} for m, ds in self.predictions.items()},
            "seconds": round(self.seconds, 1),
            "settings": self.settings,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def _repr_html_(self) -> str:
        import base64
        import html

        p = self.scores()
        table = p.to_html(float_format=lambda v: f"{v:.1f}") if len(p) else "<p>no scores</p>"
        buf = io.BytesIO()
        self.plot().savefig(buf, format="png", dpi=100)
        img = base64.b64encode(buf.getvalue()).decode("ascii")
        return (f"<div><b>OpenCompass scores</b> ({self.seconds:.0f} s, run folder "
                f"<code>{html.escape(str(self.run_dir))}</code>)<br>{table}"
                f"<img src='data:image/png;base64,{img}'/></div>")

    def __repr__(self) -> str:
        p = self.scores()
        body = p.to_string(float_format=lambda v: f"{v:.1f}") if len(p) else "(no scores)"
        return f"EvalResult({', '.join(self.models)}; run_dir={self.run_dir})\n{body}"


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("CJK", "WenQuanYi", "Noto Sans SC", "SimHei", "YaHei", "PingFang",
                                      "Source Han", "Heiti", "SimSun")):
            return f.name
    return None


# ================================================================================== evaluate
def _judge(exp_dir: Path | None, models_: list[ModelSpec], datasets: list[DatasetSpec]
           ) -> tuple[list[str], Path | None, object, list[tuple[str, str]]]:
    """(problems, summary csv, table, failed (model abbr, dataset) pairs) from the files OpenCompass left —
    never from its exit status alone."""
    everything = [(m.abbr, "*") for m in models_]
    if exp_dir is None:
        return ["OpenCompass did not start an experiment (no timestamped folder under outputs/)"], None, None, everything
    problems: list[str] = []
    pairs: list[tuple[str, str]] = []
    failed: set[tuple[str, str]] = set()
    parts = prediction_files(exp_dir, {d.name for d in datasets})
    has_oc = any(d.kind == "opencompass" for d in datasets)
    for m in models_:
        for d in datasets:
            # OpenCompass's own configs name their sub-datasets themselves: checked through the summary
            if d.kind != "opencompass" and not parts.get(m.abbr, {}).get(d.name):
                failed.add((m.name, d.name))
                pairs.append((m.abbr, d.name))
                problems.append(f"{m.name} on {d.name}: no predictions (inference failed)")
        if has_oc and not set(parts.get(m.abbr, {})) - {d.name for d in datasets}:
            pairs.append((m.abbr, "*"))
            problems.append(f"{m.name}: no predictions for the OpenCompass datasets (inference failed)")
    summaries = sorted((exp_dir / "summary").glob("summary_*.csv"))
    if not summaries:
        problems.append("no summary_*.csv was written (OpenCompass stopped before scoring)")
        return problems, None, None, pairs or everything
    table, missing = parse_summary(summaries[-1], {m.abbr: m.name for m in models_})
    abbr = {m.name: m.abbr for m in models_}
    for model, dataset, metric in missing:
        if (model, dataset) not in failed:
            pairs.append((abbr.get(model, model), dataset))
            problems.append(f"{model} on {dataset}: no {metric or 'score'} in the summary ('-')")
    present = set(table["model"])
    for m in models_:
        if m.name not in present:
            pairs.append((m.abbr, "*"))
            problems.append(f"{m.name}: missing from the summary")
    return problems, summaries[-1], table, pairs


def _task_logs(exp_dir: Path | None, failed: list[tuple[str, str]]) -> list[str]:
    """Texts of OpenCompass's per-task logs (written when tasks run as subprocesses, i.e. without --debug)
    for the failed (model abbr, dataset) pairs; dataset "*" means every task of that model."""
    if exp_dir is None or not (exp_dir / "logs").is_dir():
        return []
    out = []
    for stage in ("infer", "eval"):
        for abbr, ds in failed:
            folder = exp_dir / "logs" / stage / abbr
            for f in sorted(folder.glob("*.out" if ds == "*" else f"{ds}*.out")):
                try:
                    out.append(f.read_text(encoding="utf-8", errors="replace")[-20000:])
                except OSError:
                    pass
    return out


def evaluate(models, datasets, *, profile=None, limit: int | None = None, run_dir=None, show: bool = True,
             api_key: str | None = None, tokenizer: str | None = None, assistant_name: str | None = None
             ) -> EvalResult:
    """Evaluate models on datasets with OpenCompass; returns an EvalResult (.table, .plot(), .answers()).

    models:   catalogue/registered names, local model folders, endpoint URLs "http://HOST:PORT/v1#model",
              or endpoint objects with base_url/model/api_key (camp.serving.Endpoint).
    datasets: course sets (list_datasets()), .jsonl/.csv files (multiple choice: question,A,B,C,D,answer;
              question-answer: question,answer), or OpenCompass dataset configs ("ceval_gen") whose data
              is on this machine.
    assistant_name: the name self_cognition_check looks for in replies (or "self_cognition_check:NAME").
    limit:    only the first N questions of each dataset (quick checks).
    Raises CampError before anything runs when a model or dataset is wrong; EvalError (with .result for
    whatever did succeed) when OpenCompass ran but some model × dataset got no score."""
    from camp import hardware
    from camp.jobs import Job, JobFailed, new_run_dir

    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise CampError(f"limit={limit!r}: give a whole number of questions, at least 1")
    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    # ---- 1. check everything first (OpenCompass's import alone costs ~14 s): datasets, models, then the
    # OpenCompass dataset names, which need the opencompass env (created here when missing: minutes, once)
    specs_d = resolve_datasets(_listify(datasets), assistant_name=assistant_name, opencompass=False)
    specs_m = resolve_models(models, api_key=api_key, tokenizer=tokenizer, profile=prof)
    python = _ensure_env(show)
    if any(d.kind == "opencompass" for d in specs_d):
        pkg = opencompass_package()
        for i, d in enumerate(specs_d):
            if d.kind == "opencompass":
                spec = opencompass_dataset(d.source, pkg)
                spec.name = d.name
                specs_d[i] = spec
    settings = plan(prof, specs_m)
    for m in specs_m:
        if settings.device == "cpu" and m.kind == "local" and m.weights_gb > 1:
            m.notes.append(f"{m.name}: {m.weights_gb:.1f} GB of weights on a CPU — expect minutes per question; "
                           "try limit=… first, or a GPU profile")
    if show:
        for m in specs_m:
            for note in m.notes:
                print(f"camp: {note}", file=sys.stderr)

    # ---- 2. the run folder: config.py, data/, camp_scoring.py
    run_dir = Path(run_dir).expanduser().resolve() if run_dir else new_run_dir("eval")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = write_config(run_dir, specs_m, specs_d, settings, limit=limit)
    work_dir = run_dir / "outputs"
    before = {p.name for p in work_dir.iterdir()} if work_dir.is_dir() else set()

    # ---- 3. OpenCompass as a Job
    sizes = {(m.abbr, d.name): len(d.records[:limit] if limit else d.records)
             for m in specs_m for d in specs_d if d.kind != "opencompass"}
    known = all(d.kind != "opencompass" for d in specs_d)
    job = Job([str(python), *command(cfg, work_dir, settings)], name="eval", env="opencompass",
              run_dir=run_dir, cwd=run_dir, extra_env=run_environment(run_dir, specs_m, specs_d, settings),
              parser=EvalProgress(sizes, {m.abbr: m.name for m in specs_m}),
              total=sum(sizes.values()) if known else None, desc="OpenCompass: starting", unit="q")
    t0 = time.time()
    try:
        job.run(show=show)
    except JobFailed:
        pass  # judged from the files below, with the log lines that explain it
    except KeyboardInterrupt:
        raise CampError(f"evaluation interrupted (run folder {run_dir})") from None
    seconds = time.time() - t0

    # ---- 4. judge from the files
    exp_dir = latest_experiment(work_dir, before)
    problems, summary, table, failed = _judge(exp_dir, specs_m, specs_d)
    by_abbr = {m.abbr: m.name for m in specs_m}
    parts = {by_abbr.get(a, a): ds for a, ds in
             (prediction_files(exp_dir, {d.name for d in specs_d}) if exp_dir else {}).items()}
    result = None
    if table is not None:
        order = {m.name: i for i, m in enumerate(specs_m)}
        table = (table.assign(_m=table["model"].map(order)).sort_values("_m", kind="stable")
                 .drop(columns="_m").reset_index(drop=True))
        result = EvalResult(
            table=table, run_dir=run_dir, config_path=cfg, summary_csv=summary,
            predictions={m: {d: fs[0] for d, fs in ds.items()} for m, ds in parts.items()},
            models=[m.name for m in specs_m], datasets=list(dict.fromkeys(table["dataset"])), seconds=seconds,
            settings=settings.to_dict(), _parts=parts)
    if problems:
        log_text = job.log_path.read_text(encoding="utf-8", errors="replace") if job.log_path else ""
        why = relevant_lines(log_text)
        for text in _task_logs(exp_dir, failed):
            why += [ln for ln in relevant_lines(text) if ln not in why]
        msg = "evaluation failed: " + "; ".join(problems[:6])
        if len(problems) > 6:
            msg += f" (+{len(problems) - 6} more)"
        if job.status == "failed":
            msg += f"; OpenCompass {job.problem}"
        if why:
            msg += "\n  from the log:\n" + "\n".join("    " + ln[:300] for ln in why)
        msg += f"\n  log: {job.log_path}\n  run folder: {run_dir}"
        raise EvalError(msg, result)
    return result


def _ensure_env(show: bool) -> Path:
    from camp import envs

    try:
        return envs.python("opencompass")
    except CampError:
        if show:
            print("camp: creating the opencompass environment (a few minutes, once)", file=sys.stderr)
        envs.create("opencompass", show=show)
        return envs.python("opencompass")


def _listify(x) -> list:
    if isinstance(x, (str, os.PathLike)):
        return [x]
    return list(x)


# ================================================================================== CLI
def cli_eval(args) -> int:
    """`camp eval MODEL… -d DATASET…`: print the score table (or --json)."""
    if getattr(args, "list_datasets", False):
        rows = list_datasets()
        if getattr(args, "json", False):
            print(json.dumps(rows, ensure_ascii=False, indent=1))
        else:
            for r in rows:
                print(f"{r['name']:<24} {r['kind']:<4} {r['questions']:>3} questions  metric {r['metric']}"
                      + ("  (needs :NAME)" if r["needs_name"] else ""))
                print(f"{'':<24} {r['description']}")
        return 0
    as_json = bool(getattr(args, "json", False))
    result = evaluate(
        list(args.models), list(args.dataset), profile=getattr(args, "profile", None) or "auto",
        limit=getattr(args, "limit", None), run_dir=getattr(args, "run_dir", None), show=True,
        api_key=getattr(args, "api_key", None), tokenizer=getattr(args, "tokenizer", None),
        assistant_name=getattr(args, "assistant_name", None),
    )
    if as_json:
        print(result.to_json())
        return 0
    p = result.scores()
    print(p.to_string(float_format=lambda v: f"{v:.1f}") if len(p) else "(no scores)")
    print(f"\nrun folder: {result.run_dir}\nconfig: {result.config_path}\nsummary: {result.summary_csv}")
    return 0
