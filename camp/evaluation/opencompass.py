"""OpenCompass itself: the settings for this machine, the config camp writes into the run folder (a plain,
commented OpenCompass config a student can run by hand), the progress parser, and reading what it leaves
behind (predictions, summary CSV, the log lines that explain a failure).
"""

from __future__ import annotations

import csv
import math
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from camp.evaluation.datasets import DatasetSpec, _write_jsonl
from camp.evaluation.targets import ModelSpec
from camp.runtime.errors import CampError

MAX_OUT_LEN = {"cpu": 128, "cuda": 512}
# Questions per forward pass, by profile (7B bf16 + KV cache of a batch of ~1k-token sequences fits these).
BATCH_SIZE = {"cpu-tiny": 8, "gpu-8g": 8, "gpu-24g": 16, "gpu-40g": 32, "gpu-80g": 64}


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


def settings(profile=None, models_: list[ModelSpec] | None = None) -> Settings:
    """OpenCompass settings for this machine: CPU → num_gpus=0, in-process (--debug), small batches;
    GPUs → the profile's dtype, bigger batches, one worker per GPU (several GPUs per model when it needs them)."""
    from camp import models
    from camp.runtime import hardware

    prof = hardware.profile(profile)
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
        from camp.serving.client import no_proxy_env

        env.update(no_proxy_env())  # OpenCompass's OpenAI client must reach a local server directly
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
