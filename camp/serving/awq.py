"""AWQ W4A16 quantization with LMDeploy (`lmdeploy lite auto_awq`), calibrated on the kit's own text.
"""

from __future__ import annotations

import json
from pathlib import Path

from camp.runtime import config, envs, hardware, markers, progress
from camp.runtime.errors import CampError
from camp.runtime.stage import Stage, Step
from camp.serving.engines.lmdeploy import (
    AWQ_LAUNCHER,
    LMDEPLOY_VERSION,
    auto_awq_command,
)
from camp.serving.memory import awq_group_size, read_config
from camp.serving.stage import _served_name


# ============================================================================================ quantize()
def calibration_text() -> str:
    """The kit's calibration text: assets/calibration/*.txt, the course texts, the tiny model's dialogues."""
    assets = config.assets_dir()
    parts = [f.read_text(encoding="utf-8") for f in sorted((assets / "calibration").glob("*.txt"))]
    parts += [f.read_text(encoding="utf-8") for f in sorted((assets / "corpus").glob("*.md"))]
    dialogues = assets / "tiny" / "dialogues.jsonl"
    if dialogues.is_file():
        for line in dialogues.read_text(encoding="utf-8").splitlines():
            if line.strip():
                msgs = json.loads(line).get("messages", [])
                parts.append("".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs))
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def _awq_outputs_ok(work_dir: Path) -> str | None:
    cfg = read_config(work_dir)
    if not cfg:
        return f"no config.json in {work_dir}"
    if not awq_group_size(cfg):
        return f"{work_dir}/config.json has no AWQ quantization_config"
    if not list(work_dir.glob("*.safetensors")):
        return f"no *.safetensors weights in {work_dir}"
    return None


class QuantizeStage(Stage):
    """`camp.quantize`: AWQ W4A16 with LMDeploy, into a folder that is complete or absent, then registered."""

    name = "quantize"
    env = "lmdeploy"

    def __init__(self, model, method: str = "w4a16", *, name: str | None = None, calib_samples: int = 128,
                 calib_seqlen: int = 2048, work_dir=None, profile=None):
        self.model, self.method, self.asked_name = model, method, name
        self.calib_samples, self.calib_seqlen, self.work_dir = calib_samples, calib_seqlen, work_dir
        self.profile = hardware.profile(profile)

    def validate(self) -> None:
        from camp.models.hub import resolve

        if str(self.method).lower() not in ("w4a16", "awq"):
            raise CampError(f"unknown quantization method {self.method!r}: LMDeploy's weight quantization here is "
                            "w4a16 (AWQ, 4-bit weights); KV-cache quantization needs no step — serve(quant='kv8')")
        prof = self.profile
        if prof.device != "cuda" or not hardware.detect_gpus():
            raise CampError(
                f"quantization needs a CUDA GPU: LMDeploy {LMDEPLOY_VERSION}'s auto_awq runs the model on the GPU to "
                "calibrate (and LMDeploy does not run on CPU at all) — this machine "
                + ("has no GPU" if not hardware.detect_gpus() else f"uses the CPU profile {prof.name}")
                + ". Run it on a GPU dev machine; the course's CPU path serves the unquantized tiny model.")
        if self.calib_samples < 1 or self.calib_seqlen < 16:
            raise CampError("calib_samples must be ≥ 1 and calib_seqlen ≥ 16")
        self.folder = Path(resolve(self.model, profile=prof))
        self.cfg = read_config(self.folder)
        if awq_group_size(self.cfg):
            raise CampError(f"{self.folder} is already AWQ-quantized")
        self.base = _served_name(self.model, self.folder, prof)
        self.name_ = self.asked_name or f"{self.base}-w4a16"
        self.out = Path(self.work_dir).expanduser() if self.work_dir else config.models_dir() / self.name_

    def prepare(self, run_dir: Path):
        if markers.is_complete(self.out, "awq") or (self.out.exists() and not markers.read(self.out)
                                                   and _awq_outputs_ok(self.out) is None):
            progress.current().say(f"camp quantize: {self.out} already holds an AWQ model — reusing it (delete it "
                                   "to quantize again)")
            return self._register()
        (run_dir / "calibration.txt").write_text(calibration_text(), encoding="utf-8")
        (run_dir / "camp_lmdeploy.py").write_text(AWQ_LAUNCHER, encoding="utf-8")
        return None

    def steps(self, run_dir: Path):
        with markers.building(self.out) as tmp:
            cmd = auto_awq_command(self.folder, tmp, run_dir / "calibration.txt", calib_samples=self.calib_samples,
                                   calib_seqlen=self.calib_seqlen,
                                   dtype="float16" if self.profile.dtype == "float16" else None,
                                   trust_remote_code=bool(self.cfg.get("auto_map")))
            yield Step(f"quantize {self.name_}", [str(envs.python("lmdeploy")), str(run_dir / "camp_lmdeploy.py"),
                                                    *cmd[1:]], run_dir / "jobs" / "awq", env="lmdeploy",
                       extra_env={"HF_HUB_OFFLINE": "1"}, check=lambda job: _awq_outputs_ok(tmp),
                       desc=f"AWQ {self.name_}")
            markers.mark(tmp, "awq", base=str(self.folder), calib_samples=self.calib_samples,
                         calib_seqlen=self.calib_seqlen)

    def finish(self, run_dir: Path, jobs: list) -> Path:
        return self._register()

    def _register(self) -> Path:
        from camp import models

        meta = {"model_format": "awq", "quant": "w4a16", "base": self.base, "base_folder": str(self.folder),
                "w_bits": 4, "w_group_size": 128, "calib_samples": self.calib_samples,
                "calib_seqlen": self.calib_seqlen,
                "calibration": "camp kit text (assets/calibration, assets/corpus, tiny dialogues)"}
        models.register(self.name_, self.out, base=self.base, meta=meta)
        return self.out


def quantize(model, method: str = "w4a16", *, name: str | None = None, calib_samples: int = 128,
             calib_seqlen: int = 2048, work_dir=None, profile=None, show=True) -> Path:
    """AWQ W4A16 with LMDeploy (`lmdeploy lite auto_awq`) in the lmdeploy env, calibrated on the kit's own text
    (LMDeploy's hub datasets cannot download offline). Needs a CUDA GPU: refused before anything starts otherwise.
    The result folder is registered as `name` (default `<model>-w4a16`) with model_format awq, so `serve(name)`
    passes `--model-format awq`. Returns the folder."""
    return QuantizeStage(model, method, name=name, calib_samples=calib_samples, calib_seqlen=calib_seqlen,
                         work_dir=work_dir, profile=profile).run(show=show)


def cli_quantize(args) -> int:
    kwargs = {}
    if args.calib_samples is not None:
        kwargs["calib_samples"] = args.calib_samples
    if args.calib_seqlen is not None:
        kwargs["calib_seqlen"] = args.calib_seqlen
    out = quantize(args.model, args.method, name=args.name, **kwargs)
    print(out)
    return 0
