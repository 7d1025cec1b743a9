"""Vision-language fine-tuning with XTuner's LLaVA pipeline: `camp.finetune("tiny-vl", "data.json")`.

    r = camp.finetune("tiny-vl", "side/data.json", name="tiny-vl-side")   # a LLaVA JSON + its image folder
    camp.chat("tiny-vl-side").ask("红色的方块在哪一边？", image="side/images/0.png")

camp.finetune hands image datasets (LLaVA JSON) and vision-language models here. The stage contract
(camp.runtime.stage), in order:
  1. validate   the dataset (camp.multimodal.llava_data: a missing or unreadable image, a record without its
                `<image>` placeholder → one error naming file:line), the base model (a LLaVA folder: tiny-vl, or a
                model fine-tuned from it), the name it will be registered under (never taken from another model)
  2. xtuner env the one env policy
  3. prepare    the base split into XTuner's pieces (base/llm, base/clip, base/projector.pth) and config.py, an
                XTuner LLaVA config (camp.multimodal.xtuner_llava) a student can open and run by hand
  4. steps      `xtuner train` (xtuner/tools/train.py: the CLI exits 0 on failure), then `xtuner convert pth_to_hf`
                — each judged by its outputs; a stopped run resumes from its last checkpoint in the same run_dir
  5. finish     the trained language model and projector put back into one LLaVA folder (merged/, complete or
                absent), registered by name like a text fine-tune

Run folder: config.py, run.json, base/, work/ (XTuner's), converted/, merged/, jobs/{train,convert}/log.txt,
result.json. On GPU profiles the same LLaVA path runs on a LLaVA folder; InternVL2's own XTuner recipe
(QLoRA) is not wired in yet — the error says which XTuner config to run by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from camp.multimodal import llava_data, xtuner_llava
from camp.multimodal.backend import is_llava_folder, is_vision_folder
from camp.runtime import markers, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.stage import Stage, Step

# cpu-tiny recipe for tiny-vl (measured: see docs/tool-notes.md, "Vision-language fine-tuning")
CPU_ITERS = 200
CPU_BATCH = 16
CPU_LR = 2e-3


@dataclass
class VLFinetuneResult:
    run_dir: Path
    merged_dir: Path | None
    name: str | None
    base: str
    max_iters: int
    dataset: str
    losses: list = field(default_factory=list)
    samples: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run_dir"], d["merged_dir"] = str(self.run_dir), str(self.merged_dir) if self.merged_dir else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VLFinetuneResult:
        d = dict(d)
        d["run_dir"] = Path(d["run_dir"])
        d["merged_dir"] = Path(d["merged_dir"]) if d.get("merged_dir") else None
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def __repr__(self) -> str:
        loss = f", loss {self.losses[0][1]:.3f} → {self.losses[-1][1]:.3f}" if self.losses else ""
        return (f"<VLFinetuneResult {self.name or self.merged_dir} from {self.base}: {self.max_iters} iterations"
                f"{loss}; {self.run_dir}>")


def wants_vl(model, dataset) -> bool:
    """camp.finetune's hook: an image dataset (LLaVA JSON) or a vision-language base model comes here."""
    if isinstance(dataset, (str, os.PathLike)) and llava_data.looks_like_llava(dataset):
        return True
    try:
        from camp.models.hub import local_folder

        s = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
        if s.strip().lower() == "tiny-vl":
            return True
        folder = Path(s).expanduser() if Path(s).expanduser().is_dir() else local_folder(s)
        return folder is not None and is_vision_folder(folder)
    except CampError:
        return False


def _slug(s: str) -> str:
    return re.sub(r"[^\w.\-·]+", "-", s, flags=re.UNICODE).strip("-_.") or "model"


class VLFinetuneStage(Stage):
    name = "finetune-vl"
    env = "xtuner"

    def __init__(self, model, dataset, *, image_folder=None, name=None, profile=None, max_iters=None, lr=None,
                 batch_size=None, evaluation_inputs=None):
        self.model, self.dataset_path, self.image_folder = model, dataset, image_folder
        self.wanted_name, self.profile_arg = name, profile
        self.max_iters = int(max_iters or CPU_ITERS)
        self.lr = float(lr or CPU_LR)
        self.batch_size = int(batch_size or CPU_BATCH)
        self.evaluation_inputs = evaluation_inputs

    # 1 ------------------------------------------------------------------------------------------ validate
    def validate(self):
        from camp import models
        from camp.runtime import hardware

        self.profile = (self.profile_arg if isinstance(self.profile_arg, hardware.Profile)
                        else hardware.profile(self.profile_arg or "auto"))
        if self.dataset_path is None or not isinstance(self.dataset_path, (str, os.PathLike)):
            raise CampError(t("图文微调需要一个 LLaVA 格式的 JSON 文件（图片放在它旁边的文件夹里）",
                              "a vision-language fine-tune needs a LLaVA JSON file (its images in a folder beside it)"))
        self.data = llava_data.load(self.dataset_path, self.image_folder)  # DataError names file:line
        if self.data.n_images == 0:
            raise CampError(f"{self.dataset_path} holds no image records — a vision-language fine-tune needs pictures")
        label = os.fspath(self.model) if isinstance(self.model, os.PathLike) else str(self.model)
        self.base_dir = Path(models.resolve(label, profile=self.profile))
        self.label = self.base_dir.name if Path(label).expanduser().is_dir() else label
        if not is_llava_folder(self.base_dir):
            if is_vision_folder(self.base_dir):
                raise CampError(t(
                    f"{label} 不是 LLaVA 结构的模型：InternVL2 的 XTuner 微调（QLoRA）请用 XTuner 自带的配置手动运行，例如 "
                    "xtuner/configs/internvl/v2/internvl_v2_internlm2_2b_qlora_finetune.py；camp 目前自动化的是 LLaVA "
                    "结构（tiny-vl 及其微调结果）",
                    f"{label} is not a LLaVA-layout model: fine-tune InternVL2 with XTuner's own config by hand, e.g. "
                    "xtuner/configs/internvl/v2/internvl_v2_internlm2_2b_qlora_finetune.py; camp automates LLaVA-"
                    "layout models (tiny-vl and models fine-tuned from it)"))
            raise CampError(t(f"{label} 是纯文本模型，不能用图文数据微调 — 选一个视觉语言模型，例如 tiny-vl",
                              f"{label} is a text-only model: it cannot learn from pictures — use a vision-language "
                              "model, e.g. tiny-vl"))
        if self.max_iters < 1 or self.batch_size < 1 or self.lr <= 0:
            raise CampError("max_iters and batch_size must be ≥ 1 and lr > 0")

    # 3 ------------------------------------------------------------------------------------------ prepare
    def lock(self, run_dir):
        from camp.runtime import config

        return config.file_lock(run_dir / ".camp-finetune.lock", busy=(
            f"another camp process is fine-tuning in {run_dir} — wait for it, or use another run_dir"))

    def key(self) -> str:
        """What defines the run: the base's weights, the data (records and picture files) and the settings."""
        h = hashlib.sha256()
        h.update(markers.read_json(self.base_dir / markers.MARKER).get("weights_sha256", str(self.base_dir)).encode())
        h.update(json.dumps([self.data.records, self.max_iters, self.lr, self.batch_size, self.evaluation_inputs],
                            ensure_ascii=False, sort_keys=True).encode())
        for image in sorted({r["image"] for r in self.data.records if r.get("image")}):
            h.update(image.encode() + (self.data.image_folder / image).read_bytes())
        return h.hexdigest()

    def run_dir(self, run_dir=None) -> Path:
        if run_dir is None:
            # one folder per (base, data, settings): asking again for the same fine-tune returns the finished run
            # instead of training the same model twice (a new dataset or setting trains anew)
            from camp.runtime import config

            run_dir = config.runs_dir() / f"finetune-vl-{_slug(self.label)}-{self.key()[:12]}"
        return super().run_dir(run_dir)

    def prepare(self, run_dir):
        self.started = time.time()
        done = markers.read_json(run_dir / "result.json")
        if done.get("merged_dir") and markers.is_complete(done["merged_dir"], "merged"):
            from camp import models

            res = VLFinetuneResult.from_dict(done)
            res.reused = True
            wanted = self.wanted_name or res.name
            if wanted and models.registered().get(wanted, {}).get("path") != str(res.merged_dir.resolve()):
                # as a text fine-tune: a name another model holds is kept; this one gets a versioned name
                wanted = models.register_new(wanted, res.merged_dir, base=res.base, meta={"run_dir": str(run_dir)})
            res.name = wanted
            progress.get(getattr(self, "show", True)).say(t(f"{run_dir} 里已经有同样数据和设置的微调结果：直接使用（换数据或设置才会重新训练）",
                                     f"{run_dir} holds a finished fine-tune with the same data and settings: using it "
                                     "(other data or settings train anew)"))
            return res
        name = self.wanted_name or f"{_slug(self.label)}-ft-{run_dir.name[:15]}"
        self.run_name = name
        info = markers.read_json(run_dir / "run.json")
        data_sha = hashlib.sha256(json.dumps(self.data.records, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        if info and (info.get("data_sha256") != data_sha or info.get("max_iters") != self.max_iters
                     or info.get("base_dir") != str(self.base_dir)):
            if any((run_dir / "work").glob("iter_*.pth")):
                raise CampError(f"{run_dir} holds a started run with other data, base or iterations — resume it "
                                "with the same ones, or pass another run_dir")
        base = run_dir / "base"
        if not markers.is_complete(base, "xtuner-pieces", source=str(self.base_dir)):
            with markers.building(base, replace=True) as tmp:
                xtuner_llava.split(self.base_dir, tmp)
                markers.mark(tmp, "xtuner-pieces", source=str(self.base_dir))
        parts = {"llm": base / "llm", "clip": base / "clip", "projector": base / "projector.pth"}
        cfg = json.loads((self.base_dir / "config.json").read_text(encoding="utf-8"))
        first = next(r for r in self.data.records if r.get("image"))
        question = first["conversations"][0]["value"].replace("<image>", "").strip()
        (run_dir / "prepare_data.py").write_text(xtuner_llava.PREPARE_SCRIPT, encoding="utf-8")
        (run_dir / "config.py").write_text(xtuner_llava.render_config(
            parts=parts, data_path=self.data.path, image_folder=self.data.image_folder, max_iters=self.max_iters,
            lr=self.lr, batch_size=self.batch_size, feature_layer=int(cfg.get("vision_feature_layer", -2)),
            evaluation_image=self.data.image_folder / first["image"],
            evaluation_inputs=self.evaluation_inputs or [question], title=run_dir.name,
            tokenized=run_dir / "data_tokenized",
            log_every=max(1, min(10, self.max_iters // 10))), encoding="utf-8")
        markers.write_json(run_dir / "run.json", {
            "model": str(self.model), "base": self.label, "base_dir": str(self.base_dir), "dataset": str(self.data.path),
            "image_folder": str(self.data.image_folder), "records": len(self.data), "name": name,
            "max_iters": self.max_iters, "lr": self.lr, "batch_size": self.batch_size, "profile": self.profile.name,
            "data_sha256": data_sha})
        return None

    # 4 ------------------------------------------------------------------------------------------ the tool runs
    def _extra_env(self) -> dict:
        from camp.training import xtuner_compat

        extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
        if self.profile.device == "cpu":
            extra["CUDA_VISIBLE_DEVICES"] = ""
            extra.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        return extra

    def steps(self, run_dir):
        from camp.runtime import envs
        from camp.training.xtuner import LogParser, ToolLog, _last_checkpoint, train_check, train_command

        work, config = run_dir / "work", run_dir / "config.py"
        final = work / f"iter_{self.max_iters}.pth"
        self.parser = LogParser()
        tokenized = run_dir / "data_tokenized"
        data_sha = markers.read_json(run_dir / "run.json").get("data_sha256")
        if not markers.is_complete(tokenized, "xtuner-data", data_sha256=data_sha):
            shutil.rmtree(tokenized, ignore_errors=True)
            log = ToolLog()

            def tokenized_ok(job):
                if log.traceback:
                    return f"XTuner's dataset build raised {log.error or 'an exception'}"
                return None if (tokenized / "dataset_info.json").is_file() else f"no dataset written in {tokenized}"

            yield Step("xtuner prepare data", [str(envs.python("xtuner")), "prepare_data.py", str(config),
                                               str(tokenized)],
                       run_dir / "jobs" / "data", env="xtuner", cwd=run_dir, extra_env=self._extra_env(), parser=log,
                       check=tokenized_ok)
            markers.mark(tokenized, "xtuner-data", data_sha256=data_sha)
        if _last_checkpoint(work) != final:
            resume = _last_checkpoint(work)
            train_py = envs.find_package("xtuner", "xtuner") / "tools" / "train.py"
            cmd = train_command(envs.python("xtuner"), train_py, config, work,
                                SimpleNamespace(num_gpus=1, deepspeed=None), resume=resume)
            parser = self.parser
            yield Step("xtuner train", cmd, run_dir / "jobs" / "train", env="xtuner", cwd=run_dir,
                       extra_env=self._extra_env(), parser=parser, check=train_check(parser, work, self.max_iters), total=self.max_iters, unit="it",
                       desc="train", hints=[(r"image file is truncated|cannot identify image file",
                                             "an image of the dataset cannot be read")])
        converted = run_dir / "converted"
        if not markers.is_complete(converted, "xtuner-convert", checkpoint=str(final)):
            shutil.rmtree(converted, ignore_errors=True)
            log = ToolLog()

            def written(job):
                if log.traceback:
                    return f"xtuner convert raised {log.error or 'an exception'} (the CLI exits 0 anyway)"
                if not list(converted.glob("model*.safetensors")) or not (converted / "projector").is_dir():
                    return f"exited 0 but no language model or projector/ in {converted}"
                return None

            xtuner = str(envs.env_path("xtuner") / "bin" / "xtuner")
            yield Step("xtuner convert", [xtuner, "convert", "pth_to_hf", str(config), str(final), str(converted),
                                          "--fp32", "--safe-serialization"],
                       run_dir / "jobs" / "convert", env="xtuner", cwd=run_dir, extra_env=self._extra_env(),
                       parser=log, check=written)
            markers.mark(converted, "xtuner-convert", checkpoint=str(final))

    # 6 ------------------------------------------------------------------------------------------ the result
    def finish(self, run_dir, jobs):
        from camp import models
        from camp.training.xtuner import parse_log

        merged = run_dir / "merged"
        if not markers.is_complete(merged, "merged"):
            with markers.building(merged, replace=True) as tmp:
                xtuner_llava.assemble(self.base_dir, run_dir / "converted", tmp)
                markers.mark(tmp, "merged", base=str(self.base_dir), dataset=str(self.data.path))
        # a name another model holds is kept; this one gets a versioned name (name-2, …), as for text fine-tunes
        self.run_name = models.register_new(self.run_name, merged, base=self.label,
                                            meta={"run_dir": str(run_dir), "method": "full",
                                                  "iterations": self.max_iters, "dataset": str(self.data.path),
                                                  "modality": "vision"})
        log_path = run_dir / "jobs" / "train" / "log.txt"
        log = parse_log(log_path.read_text(encoding="utf-8", errors="replace")) if log_path.is_file() else None
        seconds = {j.name: round(j.seconds or 0, 2) for j in jobs}
        seconds["total"] = round(time.time() - self.started, 2)
        res = VLFinetuneResult(run_dir=run_dir, merged_dir=merged, name=self.run_name, base=self.label,
                               max_iters=self.max_iters, dataset=str(self.data.path),
                               losses=sorted(log.losses.items()) if log else [],
                               samples={str(k): v for k, v in (log.samples.items() if log else [])}, seconds=seconds)
        markers.write_json(run_dir / "result.json", res.to_dict())
        return res


def finetune_vl(model="tiny-vl", dataset=None, *, image_folder=None, name: str | None = None, profile=None,
                max_iters: int | None = None, lr: float | None = None, batch_size: int | None = None,
                run_dir=None, evaluation_inputs=None, show: bool = True) -> VLFinetuneResult:
    """Fine-tune a LLaVA-layout model (tiny-vl) on a LLaVA dataset with XTuner; register the result by name."""
    stage = VLFinetuneStage(model, dataset, image_folder=image_folder, name=name, profile=profile,
                            max_iters=max_iters, lr=lr, batch_size=batch_size, evaluation_inputs=evaluation_inputs)
    stage.show = show
    return stage.run(run_dir=run_dir, show=show)


def cli_finetune_vl(args) -> int:
    """`camp finetune tiny-vl data.json [--name N] [--image-folder DIR] …`"""
    if getattr(args, "plan_only", False):
        raise CampError("--plan-only plans text fine-tunes; a vision-language fine-tune of tiny-vl needs no plan")
    res = finetune_vl(args.model, args.dataset, image_folder=getattr(args, "image_folder", None), name=args.name,
                      profile=args.profile, max_iters=args.max_iters, lr=args.lr, run_dir=args.run_dir)
    if getattr(args, "json", False):
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(f"merged model: {res.merged_dir}")
    print(f"registered as: {res.name}   (try: camp chat {res.name} --image PICTURE --prompt \"…\")")
    return 0
