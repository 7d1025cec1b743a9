"""Fine-tuning with XTuner: `camp.finetune(model, dataset)` and `camp finetune MODEL DATA`.

    r = camp.finetune("tiny", camp.data.self_cognition("小助手", "张三"), name="my-assistant")
    camp.chat("my-assistant").ask("你是谁？");  r.compare(["你是谁？"])

One call runs the whole chain, each stage resumable, in one run folder:
  1. check the dataset (camp.data.load) and plan it (camp.plan.plan) — a bad record or a plan that cannot fit is
     refused before anything starts; then the model folder (camp.models.resolve: may download);
  2. write `config.py` (a readable XTuner config for the plan) and `data.jsonl` (the dataset in XTuner's
     conversation format) — open them to see what XTuner runs;
  3. train: the xtuner env's python runs `xtuner/tools/train.py` as a Job (the `xtuner` CLI exits 0 even when
     training fails, so success is judged from the work dir: the last iteration's checkpoint and a log without a
     Traceback). A cancelled or killed run resumes from its last checkpoint when called again with the same
     run_dir, and still ends at the same iteration;
  4. `xtuner convert pth_to_hf` (the HF adapter) and `xtuner convert merge` (the full model), as Jobs;
  5. register the merged folder by name (camp.models.register) so camp.chat, evaluation and deployment take it.

Run folder (`$CAMP_HOME/runs/<time>-finetune-<model>`, or run_dir):
  config.py, data.jsonl, deepspeed.json?  what XTuner runs        run.json     what was asked, the plan
  work/       XTuner's work dir (iter_N.pth, last_checkpoint, its own logs)
  adapter/    the HF LoRA adapter            merged/     the merged model (registered)
  jobs/{train,convert,merge}/log.txt         each tool's output      result.json  the outcome
Folders appear complete or not at all (written to a temporary sibling, marked, then renamed).

The CPU workarounds XTuner 0.2.0 needs live in camp.training.xtuner_compat; the live view in camp.ui.progress.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from camp.runtime import progress
from camp.runtime.errors import CampError
from camp.training import plan as _planner
from camp.training.result import FinetuneResult, _identity_question, _read_json, _write_json
from camp.training.xtuner import (
    CPU_BATCH,
    LogParser,
    ToolLog,
    _ckpt_iter,
    _last_checkpoint,
    default_lr,
    iterations,
    parse_log,
    render_config,
    train_command,
)

MARKER = ".camp-complete"


# ============================================================================ folders: complete or absent
def _mark(folder: Path, info: dict) -> None:
    files = {f.relative_to(folder).as_posix(): f.stat().st_size for f in sorted(folder.rglob("*"))
             if f.is_file() and not f.name.startswith(".")}
    _write_json(folder / MARKER, {**info, "files": files, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def is_complete(folder: Path) -> bool:
    """camp wrote this folder to the end: its marker lists every file with its size."""
    data = _read_json(Path(folder) / MARKER)
    files = data.get("files")
    if not files:
        return False
    for rel, size in files.items():
        try:
            if (Path(folder) / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _tmp_sibling(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _install(tmp: Path, folder: Path) -> None:
    """Put a finished temporary folder in place. An incomplete folder there is ours (a crash): replaced."""
    for old in folder.parent.glob(f".{folder.name}.tmp-*"):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        if is_complete(folder):
            raise CampError(f"{folder} is already complete; camp does not overwrite it")
        shutil.rmtree(folder)
    os.replace(tmp, folder)


# ============================================================================ preparing a run
@dataclass
class _Prepared:
    model: str
    label: str
    records: list
    dataset_label: str
    plan: object
    profile: object
    base_dir: Path | None = None
    seconds: float = 0.0  # spent checking and planning


def _label(model) -> str:
    s = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
    p = Path(s).expanduser()
    if p.is_dir():
        return p.resolve().name
    return s.strip()


def _catalogue_name(model) -> str | None:
    """The catalogue name when `model` names a catalogue entry (plannable without downloading it)."""
    from camp import models

    if isinstance(model, os.PathLike) or Path(str(model)).expanduser().is_dir():
        return None
    s = str(model).strip()
    if s.lower() == "auto":
        return None
    try:
        m = models.get(s)
    except CampError:
        return None
    return m.name if m.in_catalogue else None


def _prepare(model, dataset, *, profile, plan, method, max_length) -> _Prepared:
    """Checks that need no run folder: the dataset (every bad record named), then the plan. Catalogue models are
    planned by name before any download; local folders and registered names are resolved first (instant)."""
    from camp import data, models
    from camp.runtime import hardware

    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    if isinstance(dataset, (str, os.PathLike)):
        records = data.load(dataset)
        dataset_label = str(Path(dataset).expanduser())
    else:
        records = data.load(list(dataset))
        dataset_label = f"{len(records)} records"
    if not records:
        raise CampError(f"{dataset_label} holds no records — build a dataset first, e.g. camp.data.self_cognition(…)")
    if isinstance(model, str) and model.strip().lower() == "auto":
        model = prof.default_model
    name = _catalogue_name(model)
    base_dir = None
    if name is None:
        base_dir = Path(models.resolve(model, profile=prof))
    label = name or _label(model)
    if plan is None:
        kwargs = {"method": method, "max_length": max_length}
        if prof.device == "cpu":
            kwargs["batch_size"] = CPU_BATCH
        plan = _planner.plan(name or base_dir, records, prof, **kwargs)
    elif not plan.fits:
        raise _planner.PlanError(f"the given plan does not fit: {plan.headline()}", plan)
    return _Prepared(str(model), label, records, dataset_label, plan, prof, base_dir)


def _pid_alive(pid: int, needle: str) -> bool:
    try:
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ProcessLookupError):
        return False
    return needle in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    import fcntl

    with open(run_dir / ".camp-finetune.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampError(f"another camp process is fine-tuning in {run_dir} — wait for it, or use another "
                            "run_dir") from None
        yield


def _xtuner_tool(name: str) -> Path:
    """A file of the installed xtuner package in the xtuner env (found without importing XTuner: ~50 ms)."""
    import subprocess

    from camp.runtime import envs

    py = envs.python("xtuner")
    r = subprocess.run([str(py), "-c", "import importlib.util as u; s = u.find_spec('xtuner'); "
                        "print(s.submodule_search_locations[0] if s else '')"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    root = r.stdout.strip()
    if r.returncode != 0 or not root:
        raise CampError(f"XTuner is not installed in the xtuner env ({py}) — run `camp env create xtuner --force`")
    return Path(root) / name


def _env_has(module: str) -> bool:
    import subprocess

    from camp.runtime import envs

    r = subprocess.run([str(envs.python("xtuner")), "-c", f"import importlib.util as u; "
                        f"raise SystemExit(0 if u.find_spec({module!r}) else 1)"], capture_output=True, timeout=60)
    return r.returncode == 0


# ============================================================================ finetune()
def finetune(model="auto", dataset=None, *, name: str | None = None, profile=None, plan=None, method: str = "auto",
             max_iters: int | None = None, epochs: float | None = None, lr: float | None = None,
             max_length: int | None = None, run_dir=None, evaluation_inputs: list[str] | None = None,
             show: bool = True, merge: bool = True) -> FinetuneResult:
    """Fine-tune `model` on `dataset` with XTuner; convert, merge and register the result. See the module doc.

    model: catalogue name, registered name, local folder, or "auto" (the profile's default). dataset: a file
    (.jsonl/.json: OpenAI messages, alpaca or XTuner conversation) or a list of records. plan: a camp.plan.Plan
    (default: planned here for the profile; on a CPU with batch 4). max_iters / epochs / lr: default from the
    recipe (cpu-tiny: 400 examples, i.e. 100 iterations at batch 4, lr 1e-2). run_dir: a run folder to create, or to resume (a stopped run continues from its last
    checkpoint; a finished one is returned as it is). evaluation_inputs: the questions XTuner's chat hook asks
    while training (default: the identity question "你是谁？"). merge=False stops after the adapter.
    Returns a FinetuneResult; raises DataError (bad records), PlanError (nothing fits) before anything starts."""
    if dataset is None:
        raise CampError("finetune needs a dataset: a .jsonl file or a list of records, e.g. "
                        "camp.data.self_cognition('小助手', '张三')")
    from camp.multimodal.stage import finetune_vl, wants_vl

    if wants_vl(model, dataset):  # pictures: XTuner's LLaVA pipeline (camp.multimodal.stage)
        return finetune_vl(model, dataset, name=name, profile=profile, max_iters=max_iters, lr=lr, run_dir=run_dir,
                           evaluation_inputs=evaluation_inputs, show=show)
    t0 = time.time()
    prep = _prepare(model, dataset, profile=profile, plan=plan, method=method, max_length=max_length)
    prep.seconds = time.time() - t0
    progress.get(show).show(prep.plan)
    return _execute(prep, name=name, max_iters=max_iters, epochs=epochs, lr=lr, run_dir=run_dir,
                    evaluation_inputs=evaluation_inputs, show=show, merge=merge)


finetune.plan = _planner.plan  # `camp.finetune.plan(model, dataset, profile)`, as the course notes write it


def _say(show, msg: str) -> None:
    progress.get(show).say(msg)


def _execute(prep: _Prepared, *, name, max_iters, epochs, lr, run_dir, evaluation_inputs, show, merge
             ) -> FinetuneResult:
    from camp import data, models
    from camp.runtime import jobs

    t_prep = time.time()
    p = prep.plan
    n_iters, iters_note = iterations(p, len(prep.records), max_iters=max_iters, epochs=epochs)
    lr_given = lr is not None
    lr = default_lr(p) if lr is None else float(lr)
    questions = list(evaluation_inputs) if evaluation_inputs else [_identity_question()]
    from camp.runtime import envs

    envs.python("xtuner")  # a missing xtuner env is said before any run folder is made
    if p.deepspeed and not _env_has("deepspeed"):
        raise CampError(f"the plan uses DeepSpeed {_planner.zero_title(p.deepspeed)}, which is not installed in the "
                        "xtuner env — add deepspeed to environments/xtuner.txt and `camp env create xtuner`, or plan "
                        "without it: camp.finetune.plan(..., deepspeed=None)")
    if run_dir is None:
        run_dir = jobs.new_run_dir(f"finetune-{prep.label}")
    run_dir = Path(run_dir).expanduser().absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir):
        finished = _read_json(run_dir / "result.json")
        merged, adapter = finished.get("merged_dir"), finished.get("adapter_dir")
        if (merged and is_complete(Path(merged))) or (not merge and adapter and is_complete(Path(adapter))):
            res = FinetuneResult.from_dict(finished)
            res.reused = True
            wanted = name or res.name
            if res.merged_dir is not None and wanted and _registered_path(wanted) != res.merged_dir.resolve():
                # the name was removed meanwhile, or another name is asked for: (re)register, nothing else
                models.register(wanted, res.merged_dir, base=res.base, meta={"run_dir": str(run_dir)})
                res.name = wanted
            _say(show, f"{run_dir} holds a finished run ({res.name or res.adapter_dir}): returning it without "
                       "training again (use another run_dir to train anew)")
            return res
        base_dir = prep.base_dir or Path(models.resolve(prep.model, profile=prep.profile))
        config_path, data_path, work_dir = run_dir / "config.py", run_dir / "data.jsonl", run_dir / "work"
        data_text = "".join(json.dumps(data.to_xtuner(r), ensure_ascii=False) + "\n" for r in prep.records)
        cfg_text = render_config(p, model_path=base_dir, data_path=data_path, n_records=len(prep.records),
                                 max_iters=n_iters, lr=lr, evaluation_inputs=questions, title=run_dir.name,
                                 iters_note=iters_note)
        info = _read_json(run_dir / "run.json")
        started = bool(info) and config_path.is_file() and any(work_dir.glob("iter_*.pth"))
        if started:
            # A started run is defined by its own config.py (the plan's memory budget, say, moves with the free
            # RAM): keep it, but refuse different data or different explicit settings.
            asked = {"max_iters": max_iters, "lr": lr if lr_given else None}
            changed = [k for k, v in asked.items() if v is not None and float(v) != float(info.get(k, v))]
            if epochs is not None and n_iters != info.get("max_iters"):
                changed.append("epochs")
            if _read_text(data_path) != data_text or changed:
                what = ", ".join(changed) or "dataset"
                raise CampError(f"{run_dir} holds a started run with a different {what} — resume it with the same "
                                "data and settings, or pass another run_dir")
            n_iters = int(info["max_iters"])
            base_dir = Path(info.get("base_dir") or base_dir)
            with contextlib.suppress(TypeError, KeyError):
                p = _planner.Plan(**{k: v for k, v in info["plan"].items() if k != "effective_batch"})
        else:
            data_path.write_text(data_text, encoding="utf-8")
            config_path.write_text(cfg_text, encoding="utf-8")
            ds = p.deepspeed_config()
            if ds:
                _write_json(run_dir / "deepspeed.json", ds)
            run_name = name or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}"
            _write_json(run_dir / "run.json", {
                "model": prep.model, "base": prep.label, "base_dir": str(base_dir), "dataset": prep.dataset_label,
                "records": len(prep.records), "name": run_name, "max_iters": n_iters, "iters_note": iters_note,
                "lr": lr, "evaluation_inputs": questions, "plan": p.to_dict(), "profile": prep.profile.name})
        info = _read_json(run_dir / "run.json")
        run_name = name or info.get("name") or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}"
        seconds = dict(_read_json(run_dir / "state.json").get("seconds", {}))
        seconds["prepare"] = round(prep.seconds + time.time() - t_prep, 2)

        # ---------------------------------------------------------------- train
        final = work_dir / f"iter_{n_iters}.pth"
        if _last_checkpoint(work_dir) != final:
            t0 = time.time()
            _train(run_dir, config_path, work_dir, p, n_iters, show)
            seconds["train"] = round(time.time() - t0, 2)
            _save_state(run_dir, seconds=seconds)
        log = parse_log(_read_text(run_dir / "jobs" / "train" / "log.txt"))

        # ---------------------------------------------------------------- convert + merge
        adapter_dir = merged_dir = None
        if p.method == "full":
            merged_dir = run_dir / "merged"
            if not is_complete(merged_dir):
                t0 = time.time()
                _convert(run_dir, config_path, final, merged_dir, p, full=True, base_dir=base_dir, show=show)
                seconds["convert"] = round(time.time() - t0, 2)
        else:
            adapter_dir = run_dir / "adapter"
            if not is_complete(adapter_dir):
                t0 = time.time()
                _convert(run_dir, config_path, final, adapter_dir, p, full=False, base_dir=base_dir, show=show)
                seconds["convert"] = round(time.time() - t0, 2)
            if merge:
                merged_dir = run_dir / "merged"
                if not is_complete(merged_dir):
                    t0 = time.time()
                    _merge(run_dir, base_dir, adapter_dir, merged_dir, p, show=show)
                    seconds["merge"] = round(time.time() - t0, 2)
        registered = None
        if merged_dir is not None:
            models.register(run_name, merged_dir, base=prep.label,
                            meta={"run_dir": str(run_dir), "method": p.method, "iterations": n_iters,
                                  "dataset": prep.dataset_label})
            registered = run_name
        _save_state(run_dir, seconds=seconds)
        result = FinetuneResult(
            run_dir=run_dir, config_path=config_path, work_dir=work_dir, checkpoint=final,
            adapter_dir=adapter_dir, merged_dir=merged_dir, name=registered, base=prep.label, base_dir=base_dir,
            plan=p, max_iters=n_iters, losses=sorted(log.losses.items()), samples=log.samples, seconds=seconds,
            resumed_from=log.resumed_from)
        _write_json(run_dir / "result.json", result.to_dict())
        if show and registered:
            _say(show, f"fine-tuned model: {merged_dir}\nregistered as {registered!r}: camp.chat({registered!r}) "
                       f"or `camp chat {registered}`")
        return result


def _registered_path(name: str) -> Path | None:
    from camp import models

    entry = models.registered().get(name)
    return Path(entry["path"]).resolve() if entry else None


def _slug(s: str) -> str:
    return re.sub(r"[^\w.\-·]+", "-", s, flags=re.UNICODE).strip("-_.") or "model"


def _run_id(run_dir: Path) -> str:
    m = re.match(r"(\d{8}-\d{6})", run_dir.name)
    return m.group(1) if m else _slug(run_dir.name)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _save_state(run_dir: Path, **kw) -> None:
    state = _read_json(run_dir / "state.json")
    state.update(kw)
    _write_json(run_dir / "state.json", state)


def _train(run_dir: Path, config_path: Path, work_dir: Path, p, n_iters: int, show: bool) -> None:
    from camp.runtime import envs
    from camp.runtime.jobs import Job, JobFailed
    from camp.training import xtuner_compat

    state = _read_json(run_dir / "state.json")
    pid = state.get("train_pid")
    if pid and _pid_alive(int(pid), str(config_path)):
        raise CampError(f"an earlier training of this run is still running (pid {pid}) — wait for it to end, or "
                        f"stop it (kill {pid}), then call finetune again")
    py = envs.python("xtuner")
    train_py = _xtuner_tool("tools/train.py")
    resume = _last_checkpoint(work_dir)
    cmd = train_command(py, train_py, config_path, work_dir, p, resume=resume)
    parser = LogParser()
    final = work_dir / f"iter_{n_iters}.pth"

    def check(job) -> str | None:
        parser.close()
        if parser.traceback:
            return f"XTuner raised {parser.error or 'an exception'} (it exited 0 anyway)"
        if _last_checkpoint(work_dir) != final:
            return f"exited 0 but {final.name} is missing: training did not reach iteration {n_iters}"
        return None

    extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
    if p.device == "cpu":
        extra["CUDA_VISIBLE_DEVICES"] = ""  # the plan is for the CPU: XTuner must not pick up a GPU
        extra.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    job = Job(cmd, name="xtuner train", env="xtuner", cwd=run_dir, run_dir=run_dir / "jobs" / "train",
              extra_env=extra, parser=parser, expect=check, total=n_iters, desc="train", unit="it")
    if resume:
        _say(show, f"resuming from {resume.name} (iteration {_ckpt_iter(resume)} of {n_iters})")
    job.start()
    _save_state(run_dir, train_pid=job.pid)
    try:
        progress.get(show).follow(job)
        job.wait()
    except KeyboardInterrupt:
        job.cancel()
        _say(True, f"training stopped at iteration {parser.iter}; call finetune again with run_dir={str(run_dir)!r} "
                   "to resume from the last checkpoint")
        raise
    except JobFailed as exc:
        raise CampError(f"training failed: {job.problem}\n  log: {job.log_path}\n  work dir: {work_dir}") from exc
    finally:
        _save_state(run_dir, train_pid=None)


def _xtuner_cli() -> str:
    from camp.runtime import envs

    return str(envs.env_path("xtuner") / "bin" / "xtuner")


def _tool_job(cmd: list[str], *, name: str, run_dir: Path, out: Path, needed: list[str], show: bool, p):
    """Run an `xtuner convert …` command as a Job: success = exit 0, no Traceback, and the needed files in out."""
    from camp.runtime.jobs import Job, JobFailed
    from camp.training import xtuner_compat

    log = ToolLog()

    def check(job) -> str | None:
        if log.traceback:
            return f"{name} raised {log.error or 'an exception'} (the xtuner CLI exits 0 anyway)"
        missing = [f for f in needed if not any(out.glob(f))]
        if missing:
            return f"exited 0 but {', '.join(missing)} missing in {out}"
        return None

    extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
    if p.device == "cpu":
        extra["CUDA_VISIBLE_DEVICES"] = ""
    job = Job(cmd, name=name, env="xtuner", cwd=run_dir, run_dir=run_dir / "jobs" / name.split()[-1],
              extra_env=extra, parser=log, expect=check, desc=name)
    _say(show, f"{name}: running (log: {job.log_path})")
    try:
        job.run(show=False)  # no progress to show: one line before, one after
    except JobFailed as exc:
        raise CampError(f"{name} failed: {job.problem}\n  log: {job.log_path}") from exc
    except KeyboardInterrupt:
        job.cancel()
        raise
    _say(show, f"{name}: done in {job.seconds or 0:.1f} s")
    return job


def _convert(run_dir: Path, config_path: Path, checkpoint: Path, out: Path, p, *, full: bool, base_dir: Path,
             show: bool) -> None:
    """`xtuner convert pth_to_hf`: the LoRA adapter (float32: small, exact), or for full fine-tuning the model."""
    tmp = _tmp_sibling(out)
    cmd = [_xtuner_cli(), "convert", "pth_to_hf", str(config_path), str(checkpoint), str(tmp)]
    if not full or p.device == "cpu":
        cmd.append("--fp32")
    cmd.append("--safe-serialization")
    needed = ["config.json", "*.safetensors"] if full else ["adapter_config.json", "adapter_model.safetensors"]
    try:
        _tool_job(cmd, name="xtuner convert", run_dir=run_dir, out=tmp, needed=needed, show=show, p=p)
        if full:
            _keep_chat_files(base_dir, tmp)
        _mark(tmp, {"kind": "model" if full else "adapter", "checkpoint": str(checkpoint)})
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _merge(run_dir: Path, base_dir: Path, adapter_dir: Path, out: Path, p, *, show: bool) -> None:
    """`xtuner convert merge`: base + adapter → a full model folder, written by XTuner's transformers 4.48 (which
    every camp env reads; a transformers 5 save would not load in 4.x)."""
    tmp = _tmp_sibling(out)
    cmd = [_xtuner_cli(), "convert", "merge", str(base_dir), str(adapter_dir), str(tmp),
           "--device", "cpu" if p.device == "cpu" else "cuda", "--safe-serialization"]
    try:
        _tool_job(cmd, name="xtuner merge", run_dir=run_dir, out=tmp,
                  needed=["config.json", "*.safetensors", "tokenizer_config.json"], show=show, p=p)
        _keep_chat_files(base_dir, tmp)
        from camp import models

        problem = models.verify(tmp)
        if problem:
            raise CampError(f"xtuner merge wrote an incomplete model ({problem}); log: {run_dir / 'jobs/merge/log.txt'}")
        _mark(tmp, {"kind": "merged", "base": str(base_dir), "adapter": str(adapter_dir)})
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


CHAT_FILES = ("generation_config.json", "chat_template.jinja", "chat_template.json")


def _keep_chat_files(base_dir: Path, out: Path) -> None:
    """What makes the merged model chat like its base: its generation config (stop tokens) and chat template.
    XTuner's merge keeps them on transformers 4.48; copy any the tool left out, as plain files."""
    for f in CHAT_FILES:
        if (base_dir / f).is_file() and not (out / f).is_file():
            shutil.copy2(base_dir / f, out / f)
    base_cfg = _read_json(base_dir / "tokenizer_config.json")
    out_cfg_path = out / "tokenizer_config.json"
    out_cfg = _read_json(out_cfg_path)
    if base_cfg.get("chat_template") and out_cfg and not out_cfg.get("chat_template") \
            and not (out / "chat_template.jinja").is_file():
        out_cfg["chat_template"] = base_cfg["chat_template"]
        _write_json(out_cfg_path, out_cfg)


# ============================================================================ CLI
def cli_finetune(args) -> int:
    """`camp finetune MODEL DATA [--name N] [--plan-only] [--json] …`"""
    from camp.multimodal.stage import cli_finetune_vl, wants_vl

    if wants_vl(args.model, args.dataset):
        return cli_finetune_vl(args)
    out = sys.stdout
    t0 = time.time()
    prep = _prepare(args.model, args.dataset, profile=args.profile, plan=None, method=args.method,
                    max_length=args.max_length)
    prep.seconds = time.time() - t0
    if args.json and args.plan_only:
        print(json.dumps(prep.plan.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(prep.plan, file=sys.stderr if args.json else out, flush=True)
    if args.plan_only:
        return 0
    result = _execute(prep, name=args.name, max_iters=args.max_iters, epochs=args.epochs, lr=args.lr,
                      run_dir=args.run_dir, evaluation_inputs=None, show=True, merge=True)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    if result.final_answers:
        print("last answers of the chat hook:", file=out)
        for q, a in result.final_answers.items():
            print(f"  {q} → {a}", file=out)
    print(f"merged model: {result.merged_dir}", file=out)
    print(f"registered as: {result.name}   (try: camp chat {result.name} -p \"{_identity_question()}\")", file=out)
    return 0
