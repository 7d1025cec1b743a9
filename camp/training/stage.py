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
from dataclasses import dataclass
from pathlib import Path

from camp.runtime import config, envs, markers, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.stage import Stage, Step
from camp.training import plan as _planner
from camp.training import xtuner_compat
from camp.training.result import FinetuneResult, _identity_question
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
    train_check,
    train_command,
)


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

    prof = hardware.profile(profile)
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


# ============================================================================ the stage
class FinetuneStage(Stage):
    """`camp.finetune`: train (XTuner) → convert (adapter) → merge → register, each step resumable."""

    name = "finetune"
    env = "xtuner"

    def __init__(self, prep: _Prepared, *, name=None, max_iters=None, epochs=None, lr=None, evaluation_inputs=None,
                 merge: bool = True, show=True, replace: bool = False):
        self.prep, self.asked_name, self.max_iters, self.epochs = prep, name, max_iters, epochs
        self.replace = replace
        self.lr_given = lr is not None
        self.lr = default_lr(prep.plan) if lr is None else float(lr)
        self.questions = list(evaluation_inputs) if evaluation_inputs else [_identity_question()]
        self.merge, self.show = merge, show
        self.t_prep = time.time()

    def validate(self) -> None:  # the dataset and the plan were checked by _prepare; here what needs no env
        self.plan = self.prep.plan
        self.n_iters, self.iters_note = iterations(self.plan, len(self.prep.records), max_iters=self.max_iters,
                                                   epochs=self.epochs)

    def run_dir(self, run_dir=None) -> Path:
        from camp.runtime.jobs import new_run_dir

        if run_dir is None:
            return new_run_dir(f"finetune-{self.prep.label}")
        return super().run_dir(run_dir)

    def lock(self, run_dir: Path):
        return config.file_lock(run_dir / ".camp-finetune.lock", busy=(
            f"another camp process is fine-tuning in {run_dir} — wait for it, or use another run_dir"))

    @staticmethod
    def _started(run_dir: Path) -> bool:
        return bool(markers.read_json(run_dir / "run.json")) and (run_dir / "config.py").is_file() and any(
            (run_dir / "work").glob("iter_*.pth"))

    def _data_text(self) -> str:
        from camp import data

        return "".join(json.dumps(data.to_xtuner(r), ensure_ascii=False) + "\n" for r in self.prep.records)

    def check_run_dir(self, run_dir: Path) -> None:
        """A started run is defined by its own config.py (the plan's memory budget, say, moves with the free RAM):
        it resumes as it is, but different data or different explicit settings are refused."""
        if not self._started(run_dir) or markers.read_json(run_dir / "result.json"):
            return
        info = markers.read_json(run_dir / "run.json")
        asked = {"max_iters": self.max_iters, "lr": self.lr if self.lr_given else None}
        changed = [k for k, v in asked.items() if v is not None and float(v) != float(info.get(k, v))]
        if self.epochs is not None and self.n_iters != info.get("max_iters"):
            changed.append("epochs")
        if _read_text(run_dir / "data.jsonl") != self._data_text() or changed:
            what = ", ".join(changed) or "dataset"
            raise CampError(f"{run_dir} holds a started run with a different {what} — resume it with the same "
                            "data and settings, or pass another run_dir")

    def prepare(self, run_dir: Path):
        from camp import models

        p, prep = self.plan, self.prep
        if p.deepspeed and not envs.find_package("xtuner", "deepspeed"):
            raise CampError(f"the plan uses DeepSpeed {_planner.zero_title(p.deepspeed)}, which is not installed in "
                            "the xtuner env — add deepspeed to environments/xtuner.txt and `camp env create xtuner`, "
                            "or plan without it: camp.finetune.plan(..., deepspeed=None)")
        reused = self._finished(run_dir)
        if reused is not None:
            return reused
        state = markers.read_json(run_dir / "state.json")
        pid = state.get("train_pid")
        if pid and _pid_alive(int(pid), str(run_dir / "config.py")):
            raise CampError(f"an earlier training of this run is still running (pid {pid}) — wait for it to end, "
                            f"or stop it (kill {pid}), then call finetune again")
        self.base_dir = prep.base_dir or Path(models.resolve(prep.model, profile=prep.profile))
        config_path, data_path = run_dir / "config.py", run_dir / "data.jsonl"
        info = markers.read_json(run_dir / "run.json")
        if self._started(run_dir):
            self.n_iters = int(info["max_iters"])
            self.base_dir = Path(info.get("base_dir") or self.base_dir)
            with contextlib.suppress(TypeError, KeyError):
                self.plan = _planner.Plan(**{k: v for k, v in info["plan"].items() if k != "effective_batch"})
        else:
            data_path.write_text(self._data_text(), encoding="utf-8")
            config_path.write_text(render_config(
                p, model_path=self.base_dir, data_path=data_path, n_records=len(prep.records),
                max_iters=self.n_iters, lr=self.lr, evaluation_inputs=self.questions, title=run_dir.name,
                iters_note=self.iters_note), encoding="utf-8")
            ds = p.deepspeed_config()
            if ds:
                markers.write_json(run_dir / "deepspeed.json", ds)
            markers.write_json(run_dir / "run.json", {
                "model": prep.model, "base": prep.label, "base_dir": str(self.base_dir),
                "dataset": prep.dataset_label, "records": len(prep.records),
                "name": self.asked_name or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}", "max_iters": self.n_iters,
                "iters_note": self.iters_note, "lr": self.lr, "evaluation_inputs": self.questions,
                "plan": p.to_dict(), "profile": prep.profile.name})
        info = markers.read_json(run_dir / "run.json")
        self.run_name = self.asked_name or info.get("name") or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}"
        self.seconds = dict(state.get("seconds", {}))
        self.seconds["prepare"] = round(prep.seconds + time.time() - self.t_prep, 2)
        return None

    def _finished(self, run_dir: Path):
        """The result of a finished run in run_dir (re-registered when its name was removed or another is asked)."""

        finished = markers.read_json(run_dir / "result.json")
        merged, adapter = finished.get("merged_dir"), finished.get("adapter_dir")
        if not ((merged and is_complete(Path(merged))) or (not self.merge and adapter and is_complete(Path(adapter)))):
            return None
        res = FinetuneResult.from_dict(finished)
        res.reused = True
        wanted = self.asked_name or res.name
        if res.merged_dir is not None and wanted and _registered_path(wanted) != res.merged_dir.resolve():
            # the name was removed meanwhile, or another name is asked for: (re)register, nothing else
            res.name = _register(wanted, res.merged_dir, base=res.base, meta={"run_dir": str(run_dir)},
                                 replace=self.replace, show=self.show)
        progress.get(self.show).say(f"{run_dir} holds a finished run ({res.name or res.adapter_dir}): returning it "
                                    "without training again (use another run_dir to train anew)")
        return res

    def steps(self, run_dir: Path):
        p, work_dir = self.plan, run_dir / "work"
        view = progress.get(self.show)
        final = work_dir / f"iter_{self.n_iters}.pth"
        if _last_checkpoint(work_dir) != final:
            t0 = time.time()
            resume = _last_checkpoint(work_dir)
            if resume:
                view.say(f"resuming from {resume.name} (iteration {_ckpt_iter(resume)} of {self.n_iters})")
            yield self._train_step(run_dir, resume)
            self.seconds["train"] = round(time.time() - t0, 2)
            _save_state(run_dir, seconds=self.seconds)
        self.adapter_dir = self.merged_dir = None
        if p.method == "full":
            self.merged_dir = run_dir / "merged"
            if not is_complete(self.merged_dir):
                yield from self._convert(run_dir, final, self.merged_dir, full=True)
        else:
            self.adapter_dir = run_dir / "adapter"
            if not is_complete(self.adapter_dir):
                yield from self._convert(run_dir, final, self.adapter_dir, full=False)
            if self.merge:
                self.merged_dir = run_dir / "merged"
                if not is_complete(self.merged_dir):
                    yield from self._merge(run_dir)

    def _train_step(self, run_dir: Path, resume: Path | None) -> Step:
        """XTuner's tools/train.py run with the env's python (the `xtuner train` CLI would hide a failure behind exit
        status 0); success = the final checkpoint and a log without a Traceback."""
        work_dir, config_path, n_iters = run_dir / "work", run_dir / "config.py", self.n_iters
        cmd = train_command(envs.python("xtuner"), envs.find_package("xtuner", "xtuner") / "tools" / "train.py",
                            config_path, work_dir, self.plan, resume=resume)
        parser = LogParser()
        return Step("xtuner train", cmd, run_dir / "jobs" / "train", env="xtuner", cwd=run_dir,
                    extra_env=self._env(), parser=parser, check=train_check(parser, work_dir, n_iters),
                    hints=XTUNER_HINTS, total=n_iters,
                    desc="train", unit="it", on_start=lambda job: _save_state(run_dir, train_pid=job.pid),
                    on_end=lambda job: _save_state(run_dir, train_pid=None),
                    interrupted=(f"training stopped; call finetune again with run_dir={str(run_dir)!r} to resume "
                                 "from the last checkpoint"))

    def _env(self) -> dict:
        extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
        if self.plan.device == "cpu":
            extra["CUDA_VISIBLE_DEVICES"] = ""  # the plan is for the CPU: XTuner must not pick up a GPU
            extra.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        return extra

    def _tool_step(self, name: str, cmd: list[str], run_dir: Path, out: Path, needed: list[str]) -> Step:
        """An `xtuner convert …` command: success = exit 0, no Traceback (the xtuner CLI exits 0 anyway), and the
        needed files in out."""
        log = ToolLog()

        def check(job) -> str | None:
            if log.traceback:
                return f"{name} raised {log.error or 'an exception'} (the xtuner CLI exits 0 anyway)"
            missing = [f for f in needed if not any(out.glob(f))]
            return f"exited 0 but {', '.join(missing)} missing in {out}" if missing else None

        return Step(name, cmd, run_dir / "jobs" / name.split()[-1], env="xtuner", cwd=run_dir,
                    extra_env=self._env(), parser=log, check=check, hints=XTUNER_HINTS, desc=name)

    def _convert(self, run_dir: Path, checkpoint: Path, out: Path, *, full: bool):
        """`xtuner convert pth_to_hf`: the LoRA adapter (float32: small, exact), or for full fine-tuning the model."""
        t0 = time.time()
        with markers.building(out) as tmp:
            cmd = [_xtuner_cli(), "convert", "pth_to_hf", str(run_dir / "config.py"), str(checkpoint), str(tmp)]
            if not full or self.plan.device == "cpu":
                cmd.append("--fp32")
            cmd.append("--safe-serialization")
            needed = ["config.json", "*.safetensors"] if full else ["adapter_config.json", "adapter_model.safetensors"]
            yield self._tool_step("xtuner convert", cmd, run_dir, tmp, needed)
            if full:
                _keep_chat_files(self.base_dir, tmp)
            markers.mark(tmp, "model" if full else "adapter", checkpoint=str(checkpoint))
        self.seconds["convert"] = round(time.time() - t0, 2)

    def _merge(self, run_dir: Path):
        """`xtuner convert merge`: base + adapter → a full model folder, written by XTuner's transformers 4.48 (which
        every camp env reads; a transformers 5 save would not load in 4.x)."""
        from camp import models

        t0 = time.time()
        with markers.building(self.merged_dir) as tmp:
            cmd = [_xtuner_cli(), "convert", "merge", str(self.base_dir), str(self.adapter_dir), str(tmp),
                   "--device", "cpu" if self.plan.device == "cpu" else "cuda", "--safe-serialization"]
            yield self._tool_step("xtuner merge", cmd, run_dir, tmp,
                                  ["config.json", "*.safetensors", "tokenizer_config.json"])
            _keep_chat_files(self.base_dir, tmp)
            problem = models.verify(tmp)
            if problem:
                raise CampError(f"xtuner merge wrote an incomplete model ({problem}); log: "
                                f"{run_dir / 'jobs/merge/log.txt'}")
            markers.mark(tmp, "merged", base=str(self.base_dir), adapter=str(self.adapter_dir))
        self.seconds["merge"] = round(time.time() - t0, 2)

    def finish(self, run_dir: Path, jobs: list) -> FinetuneResult:
        registered = None
        if self.merged_dir is not None:
            registered = _register(self.run_name, self.merged_dir, base=self.prep.label, replace=self.replace,
                                   show=self.show, meta={"run_dir": str(run_dir), "method": self.plan.method,
                                                         "iterations": self.n_iters,
                                                         "dataset": self.prep.dataset_label})
        _save_state(run_dir, seconds=self.seconds)
        log = parse_log(_read_text(run_dir / "jobs" / "train" / "log.txt"))
        work_dir = run_dir / "work"
        result = FinetuneResult(
            run_dir=run_dir, config_path=run_dir / "config.py", work_dir=work_dir,
            checkpoint=work_dir / f"iter_{self.n_iters}.pth", adapter_dir=self.adapter_dir,
            merged_dir=self.merged_dir, name=registered, base=self.prep.label, base_dir=self.base_dir, plan=self.plan,
            max_iters=self.n_iters, losses=sorted(log.losses.items()), samples=log.samples, seconds=self.seconds,
            resumed_from=log.resumed_from)
        markers.write_json(run_dir / "result.json", result.to_dict())
        if registered:
            progress.get(self.show).say(
                t(f"微调后的模型：{self.merged_dir}\n已注册为 {registered!r}：camp.chat({registered!r}) 或 "
                  f"camp chat {registered}",
                  f"fine-tuned model: {self.merged_dir}\nregistered as {registered!r}: camp.chat({registered!r}) "
                  f"or camp chat {registered}"))
        return result


def _register(name: str, folder: Path, *, base, meta, replace: bool, show) -> str:
    """Register `folder` as `name`; an earlier model under that name is kept (a versioned name is used) unless
    replace=True."""
    from camp import models

    used = models.register_new(name, folder, base=base, meta=meta, replace=replace)
    if used != name:
        progress.get(show).say(t(f"名字 {name!r} 已属于之前的模型，保留它；这次的模型注册为 {used!r}"
                                 f"（要替换旧模型，请传 replace=True）",
                                 f"the name {name!r} belongs to an earlier model, which is kept; this one is "
                                 f"registered as {used!r} (pass replace=True to replace the earlier one)"))
    return used


# Known XTuner failures, explained in one line (camp.runtime.failures adds the common ones).
XTUNER_HINTS = [
    (r"Weights only load failed", "a checkpoint from another torch version: resume needs "
     "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (camp sets it; set it yourself when running XTuner by hand)"),
    (r"operator torchvision::nms does not exist", "PyPI's torchvision does not work beside this CPU torch: "
     "remove torchvision from the xtuner env"),
]


def finetune(model="auto", dataset=None, *, name: str | None = None, profile=None, plan=None, method: str = "auto",
             max_iters: int | None = None, epochs: float | None = None, lr: float | None = None,
             max_length: int | None = None, run_dir=None, evaluation_inputs: list[str] | None = None,
             show=True, merge: bool = True, replace: bool = False) -> FinetuneResult:
    """Fine-tune `model` on `dataset` with XTuner; convert, merge and register the result. See the module doc.

    model: catalogue name, registered name, local folder, or "auto" (the profile's default). dataset: a file
    (.jsonl/.json: OpenAI messages, alpaca or XTuner conversation) or a list of records. plan: a
    camp.training.plan.Plan (default: planned here for the profile; on a CPU with batch 4). max_iters / epochs / lr:
    default from the recipe (cpu-tiny: 600 examples, i.e. 150 iterations at batch 4, lr 1e-2). run_dir: a run
    folder to create, or to resume (a stopped run continues from its last checkpoint; a finished one is returned as
    it is). evaluation_inputs: the questions XTuner's chat hook asks while training (default: the identity question
    "你是谁？"). merge=False stops after the adapter. name: the name to register the merged model under; when it
    already names another model, that one is kept and this one gets a versioned name (name-2, …; result.name says
    which) unless replace=True.
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
    return FinetuneStage(prep, name=name, max_iters=max_iters, epochs=epochs, lr=lr,
                         evaluation_inputs=evaluation_inputs, merge=merge, show=show,
                         replace=replace).run(run_dir=run_dir, show=show)


finetune.plan = _planner.plan  # `camp.finetune.plan(model, dataset, profile)`, as the course notes write it


def is_complete(folder: Path) -> bool:
    """camp wrote this folder (adapter, merged model) to the end."""
    return markers.is_complete(folder)


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
    state = markers.read_json(run_dir / "state.json")
    state.update(kw)
    markers.write_json(run_dir / "state.json", state)


def _xtuner_cli() -> str:
    return str(envs.env_path("xtuner") / "bin" / "xtuner")


CHAT_FILES = ("generation_config.json", "chat_template.jinja", "chat_template.json")


def _keep_chat_files(base_dir: Path, out: Path) -> None:
    """What makes the merged model chat like its base: its generation config (stop tokens) and chat template.
    XTuner's merge keeps them on transformers 4.48; copy any the tool left out, as plain files."""
    for f in CHAT_FILES:
        if (base_dir / f).is_file() and not (out / f).is_file():
            shutil.copy2(base_dir / f, out / f)
    base_cfg = markers.read_json(base_dir / "tokenizer_config.json")
    out_cfg_path = out / "tokenizer_config.json"
    out_cfg = markers.read_json(out_cfg_path)
    if base_cfg.get("chat_template") and out_cfg and not out_cfg.get("chat_template") \
            and not (out / "chat_template.jinja").is_file():
        out_cfg["chat_template"] = base_cfg["chat_template"]
        markers.write_json(out_cfg_path, out_cfg)


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
    result = FinetuneStage(prep, name=args.name, max_iters=args.max_iters, epochs=args.epochs,
                           lr=args.lr, replace=getattr(args, "replace", False)).run(run_dir=args.run_dir)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    if result.final_answers:
        print(t("训练中最后一次对话检查的回答：", "last answers of the chat hook:"), file=out)
        for q, a in result.final_answers.items():
            print(f"  {q} → {a}", file=out)
    print(t(f"合并后的模型：{result.merged_dir}", f"merged model: {result.merged_dir}"), file=out)
    print(t(f"已注册为：{result.name}   （试试：camp chat {result.name} -p \"{_identity_question()}\"）",
            f"registered as: {result.name}   (try: camp chat {result.name} -p \"{_identity_question()}\")"), file=out)
    return 0
