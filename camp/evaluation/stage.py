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

import json
import os
import time
from pathlib import Path

from camp.evaluation.datasets import (
    DatasetSpec,
    list_datasets,
    opencompass_dataset,
    opencompass_package,
    resolve_datasets,
)
from camp.evaluation.opencompass import (
    EvalProgress,
    command,
    latest_experiment,
    parse_summary,
    prediction_files,
    relevant_lines,
    run_environment,
    write_config,
)
from camp.evaluation.opencompass import settings as oc_settings
from camp.evaluation.result import EvalResult
from camp.evaluation.targets import ModelSpec, resolve_models
from camp.runtime import envs, hardware, progress
from camp.runtime.errors import CampError
from camp.runtime.stage import Stage, Step


class EvalError(CampError):
    """The evaluation ran but some model × dataset has no score. `.result` holds what did succeed (or None)."""

    def __init__(self, message: str, result: EvalResult | None = None):
        self.result = result
        super().__init__(message)


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


class EvaluateStage(Stage):
    """`camp.evaluate`: check models and datasets → the opencompass env → config.py → OpenCompass (one Step) →
    judged from its files, never from its exit status alone."""

    name = "eval"
    env = "opencompass"

    def __init__(self, models, datasets, *, profile=None, limit: int | None = None, api_key: str | None = None,
                 tokenizer: str | None = None, assistant_name: str | None = None, show=True):
        self.models_in, self.datasets_in, self.limit = models, datasets, limit
        self.api_key, self.tokenizer, self.assistant_name = api_key, tokenizer, assistant_name
        self.profile, self.show = hardware.profile(profile), show

    def validate(self) -> None:
        """Everything but OpenCompass's own dataset names (they need the env): OpenCompass's import alone costs
        ~14 s, so a wrong model or file must fail before."""
        limit = self.limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise CampError(f"limit={limit!r}: give a whole number of questions, at least 1")
        self.specs_d = resolve_datasets(_listify(self.datasets_in), assistant_name=self.assistant_name,
                                        opencompass=False)
        self.specs_m = resolve_models(self.models_in, api_key=self.api_key, tokenizer=self.tokenizer,
                                      profile=self.profile)

    def prepare(self, run_dir: Path):
        view = progress.get(self.show)
        if any(d.kind == "opencompass" for d in self.specs_d):
            pkg = opencompass_package()
            for i, d in enumerate(self.specs_d):
                if d.kind == "opencompass":
                    spec = opencompass_dataset(d.source, pkg)
                    spec.name = d.name
                    self.specs_d[i] = spec
        self.settings = oc_settings(self.profile, self.specs_m)
        for m in self.specs_m:
            if self.settings.device == "cpu" and m.kind == "local" and m.weights_gb > 1:
                m.notes.append(f"{m.name}: {m.weights_gb:.1f} GB of weights on a CPU — expect minutes per question; "
                               "try limit=… first, or a GPU profile")
            for note in m.notes:
                view.say(f"camp: {note}")
        self.config_path = write_config(run_dir, self.specs_m, self.specs_d, self.settings, limit=self.limit)
        work_dir = run_dir / "outputs"
        self.before = {p.name for p in work_dir.iterdir()} if work_dir.is_dir() else set()
        return None

    def steps(self, run_dir: Path):
        limit, s = self.limit, self.settings
        sizes = {(m.abbr, d.name): len(d.records[:limit] if limit else d.records)
                 for m in self.specs_m for d in self.specs_d if d.kind != "opencompass"}
        known = all(d.kind != "opencompass" for d in self.specs_d)
        self.t0 = time.time()
        # judged in finish() from the files, with the log lines that explain a failure (allow_failure)
        yield Step("eval", [str(envs.python("opencompass")), *command(self.config_path, run_dir / "outputs", s)],
                   run_dir, env="opencompass", cwd=run_dir,
                   extra_env=run_environment(run_dir, self.specs_m, self.specs_d, s),
                   parser=EvalProgress(sizes, {m.abbr: m.name for m in self.specs_m}),
                   total=sum(sizes.values()) if known else None, desc="OpenCompass: starting", unit="q",
                   allow_failure=True, interrupted=f"evaluation interrupted (run folder {run_dir})")

    def finish(self, run_dir: Path, jobs: list) -> EvalResult:
        job = jobs[0]
        seconds = time.time() - self.t0
        specs_m, specs_d = self.specs_m, self.specs_d
        exp_dir = latest_experiment(run_dir / "outputs", self.before)
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
                table=table, run_dir=run_dir, config_path=self.config_path, summary_csv=summary,
                predictions={m: {d: fs[0] for d, fs in ds.items()} for m, ds in parts.items()},
                models=[m.name for m in specs_m], datasets=list(dict.fromkeys(table["dataset"])), seconds=seconds,
                settings=self.settings.to_dict(), _parts=parts)
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


def evaluate(models, datasets, *, profile=None, limit: int | None = None, run_dir=None, show=True,
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
    return EvaluateStage(models, datasets, profile=profile, limit=limit, api_key=api_key, tokenizer=tokenizer,
                         assistant_name=assistant_name, show=show).run(run_dir=run_dir, show=show)


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
