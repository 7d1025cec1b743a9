"""AWQ W4A16 quantization with LMDeploy (`lmdeploy lite auto_awq`), calibrated on the kit's own text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from camp.runtime.errors import CampError
from camp.serving.engines.lmdeploy import (
    AWQ_LAUNCHER,
    LMDEPLOY_VERSION,
    auto_awq_command,
)
from camp.serving.memory import awq_group_size, read_config
from camp.serving.stage import _lmdeploy_env_ready, _profile, _served_name


# ============================================================================================ quantize()
def calibration_text() -> str:
    """The kit's calibration text: assets/calibration/*.txt, the course texts, the tiny model's dialogues."""
    from camp.runtime import config

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


def quantize(model, method: str = "w4a16", *, name: str | None = None, calib_samples: int = 128,
             calib_seqlen: int = 2048, work_dir=None, profile=None) -> Path:
    """AWQ W4A16 with LMDeploy (`lmdeploy lite auto_awq`) as a Job in the lmdeploy env, calibrated on the kit's
    own text (LMDeploy's hub datasets cannot download offline). Needs a CUDA GPU: refused before anything starts
    otherwise. The result folder is registered as `name` (default `<model>-w4a16`) with model_format awq, so
    `serve(name)` passes `--model-format awq`. Returns the folder."""
    from camp.runtime import config, hardware

    if str(method).lower() not in ("w4a16", "awq"):
        raise CampError(f"unknown quantization method {method!r}: LMDeploy's weight quantization here is w4a16 "
                        "(AWQ, 4-bit weights); KV-cache quantization needs no step — serve(quant='kv8')")
    prof = _profile(profile)
    if prof.device != "cuda" or not hardware.detect_gpus():
        raise CampError(
            f"quantization needs a CUDA GPU: LMDeploy {LMDEPLOY_VERSION}'s auto_awq runs the model on the GPU to "
            "calibrate (and LMDeploy does not run on CPU at all) — this machine "
            + ("has no GPU" if not hardware.detect_gpus() else f"uses the CPU profile {prof.name}")
            + ". Run it on a GPU dev machine; the course's CPU path serves the unquantized tiny model.")
    if calib_samples < 1 or calib_seqlen < 16:
        raise CampError("calib_samples must be ≥ 1 and calib_seqlen ≥ 16")
    from camp.models.hub import resolve
    from camp.runtime.jobs import Job, new_run_dir

    folder = Path(resolve(model, profile=prof))
    if awq_group_size(read_config(folder)):
        raise CampError(f"{folder} is already AWQ-quantized")
    base = _served_name(model, folder, prof)
    name = name or f"{base}-w4a16"
    out = Path(work_dir).expanduser() if work_dir else config.models_dir() / name
    if out.exists() and _awq_outputs_ok(out) is None:
        print(f"camp quantize: {out} already holds an AWQ model — reusing it (delete it to quantize again)",
              file=sys.stderr)
    else:
        _lmdeploy_env_ready()
        from camp.runtime import envs

        run_dir = new_run_dir(f"quantize-{name}")
        calib = run_dir / "calibration.txt"
        calib.write_text(calibration_text(), encoding="utf-8")
        launcher = run_dir / "camp_lmdeploy.py"
        launcher.write_text(AWQ_LAUNCHER, encoding="utf-8")
        cfg = read_config(folder)
        cmd = auto_awq_command(folder, out, calib, calib_samples=calib_samples, calib_seqlen=calib_seqlen,
                               dtype="float16" if prof.dtype == "float16" else None,
                               trust_remote_code=bool(cfg.get("auto_map")))
        job = Job([str(envs.python("lmdeploy")), str(launcher), *cmd[1:]], name=f"quantize-{name}",
                  env="lmdeploy", run_dir=run_dir, expect=lambda j: _awq_outputs_ok(out),
                  extra_env={"HF_HUB_OFFLINE": "1"}, desc=f"AWQ {name}")
        job.run(show=True)
    _register(name, out, base, folder, calib_samples, calib_seqlen)
    return out


def _register(name: str, out: Path, base: str, folder: Path, samples: int, seqlen: int) -> None:
    from camp import models

    register = getattr(models, "register", None)
    meta = {"model_format": "awq", "quant": "w4a16", "base": base, "base_folder": str(folder),
            "w_bits": 4, "w_group_size": 128, "calib_samples": samples, "calib_seqlen": seqlen,
            "calibration": "camp kit text (assets/calibration, assets/corpus, tiny dialogues)"}
    if register is None:
        print(f"camp quantize: camp.models.register is not available in this camp version — serve the folder "
              f"directly: camp.serve({str(out)!r})", file=sys.stderr)
        return
    register(name, out, base=base, meta=meta)


def cli_quantize(args) -> int:
    kwargs = {}
    if args.calib_samples is not None:
        kwargs["calib_samples"] = args.calib_samples
    if args.calib_seqlen is not None:
        kwargs["calib_seqlen"] = args.calib_seqlen
    out = quantize(args.model, args.method, name=args.name, **kwargs)
    print(out)
    return 0
