"""LMDeploy's command lines: `lmdeploy serve api_server` for a profile's memory plan and `lmdeploy lite
auto_awq` with a local calibration text. Pure functions, so the unit tests compare whole command lists.

Option names are LMDeploy 0.18.0's (lmdeploy/cli/serve.py, lite.py, utils.py in its wheel):
`lmdeploy serve api_server MODEL --server-name --server-port --backend {turbomind,pytorch} --tp
--cache-max-entry-count --quant-policy {0,4,8} --model-format {hf,awq} --api-keys … --model-name`, and
`lmdeploy lite auto_awq MODEL --calib-samples --calib-seqlen --w-bits --w-group-size --work-dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

from camp.runtime.errors import CampError
from camp.serving.memory import (
    AWQ_GROUP_SIZE,
    Quant,
    ServePlan,
    awq_group_size,
    parse_quant,
    plan_serving,
    read_config,
)

LMDEPLOY_VERSION = "0.18.0"
DEFAULT_PORT = 23333  # LMDeploy's default, which the course material tunnels


def lmdeploy_serve_command(model_dir: str | os.PathLike, profile, quant: Quant | str | None = None,
                           port: int = DEFAULT_PORT, host: str = "127.0.0.1", api_key: str | None = None,
                           tp: int | None = None, *, model_name: str | None = None, backend: str = "turbomind",
                           arch=None, plan: ServePlan | None = None) -> list[str]:
    """`lmdeploy serve api_server …` for this profile. The model format comes from the folder's config.json (AWQ
    when LMDeploy quantized it); `arch` (camp.plan.Arch) defaults to the folder's config.json too."""
    if backend not in ("turbomind", "pytorch"):
        raise CampError(f"unknown LMDeploy backend {backend!r}: turbomind or pytorch")
    q = quant if isinstance(quant, Quant) else parse_quant(quant)
    cfg = read_config(model_dir)
    group = awq_group_size(cfg)
    model_format = "awq" if group else "hf"
    if q.weights == "awq" and not group:
        raise CampError(f"{model_dir} is not AWQ-quantized (no quantization_config with quant_method awq in its "
                        "config.json): run camp.quantize(model) first and serve the folder it registers")
    if plan is None:
        if arch is None:
            from camp.training.plan import arch_from_config

            arch = arch_from_config(model_dir)
        plan = plan_serving(arch, profile, quant=q, tp=tp, model_format=model_format,
                            group_size=group or AWQ_GROUP_SIZE)
    cmd = ["lmdeploy", "serve", "api_server", str(model_dir),
           "--server-name", host,
           "--server-port", str(port),
           "--backend", backend,
           "--tp", str(plan.tp),
           "--cache-max-entry-count", f"{plan.cache_max_entry_count:g}",
           "--quant-policy", str(plan.quant_policy),
           "--model-format", model_format]  # fmt: skip
    if api_key:
        cmd += ["--api-keys", api_key]
    cmd += ["--model-name", model_name or Path(model_dir).name]
    return cmd


def auto_awq_command(model_dir: str | os.PathLike, work_dir: str | os.PathLike, calib_file: str | os.PathLike, *,
                     calib_samples: int = 128, calib_seqlen: int = 2048, w_bits: int = 4,
                     w_group_size: int = AWQ_GROUP_SIZE, dtype: str | None = None,
                     trust_remote_code: bool = False) -> list[str]:
    """`lmdeploy lite auto_awq` with a LOCAL calibration text as --calib-dataset. Stock LMDeploy 0.18 accepts
    only hub dataset names there: run this through AWQ_LAUNCHER (below), which takes the file."""
    cmd = ["lmdeploy", "lite", "auto_awq", str(model_dir),
           "--calib-dataset", str(calib_file),
           "--calib-samples", str(calib_samples),
           "--calib-seqlen", str(calib_seqlen),
           "--w-bits", str(w_bits),
           "--w-group-size", str(w_group_size),
           "--work-dir", str(work_dir)]  # fmt: skip
    if dtype:
        cmd += ["--dtype", dtype]
    if trust_remote_code:
        cmd += ["--trust-remote-code"]
    return cmd


# The file quantize() writes into its run folder and runs with the lmdeploy env's python, as
# `python camp_lmdeploy.py lite auto_awq MODEL --calib-dataset FILE …` (the `lmdeploy` entry point, plus one patch).
AWQ_LAUNCHER = r'''"""`lmdeploy …` with a local calibration text file: written by camp for LMDeploy 0.18.0.

LMDeploy 0.18 accepts only hub dataset names for --calib-dataset (argparse choices wikitext2, c4, pileval, gsm8k,
…; lmdeploy/lite/apis/calibrate.py asserts the same) and downloads them, which fails offline. Here
`--calib-dataset PATH` names a UTF-8 text file: it is taken out of the arguments (LMDeploy then sees its default
name, wikitext2), and the loader calibrate.py imported, `get_calib_loaders`, is replaced by one that cuts
`--calib-samples` windows of `--calib-seqlen` tokens from the text at seeded random offsets, as LMDeploy's own
wikitext2 loader does. Everything else is LMDeploy's CLI unchanged.
"""
import os
import random
import sys


def text_windows(path, tokenizer, nsamples, seed, seqlen):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    ids = tokenizer(text, return_tensors="pt").input_ids  # [1, n]
    if ids.shape[1] <= seqlen + 1:  # shorter than a window: repeat the text
        ids = ids.repeat(1, seqlen // ids.shape[1] + 2)
    rng = random.Random(seed)
    windows = []
    for _ in range(nsamples):
        i = rng.randint(0, ids.shape[1] - seqlen - 1)
        windows.append(ids[:, i:i + seqlen])
    return windows


def take_calib_file(args):
    """(args without `--calib-dataset FILE`, FILE) when FILE is an existing file, else (args, None)."""
    if "--calib-dataset" in args:
        k = args.index("--calib-dataset")
        if k + 1 < len(args) and os.path.isfile(args[k + 1]):
            return args[:k] + args[k + 2:], args[k + 1]
    return list(args), None


def main(argv):
    args, path = take_calib_file(argv)
    if path:
        import lmdeploy.lite.apis.calibrate as calibrate

        def get_calib_loaders(name, tokenizer, nsamples=128, seed=0, seqlen=2048):
            print(f"[camp] calibration: {nsamples} windows of {seqlen} tokens from {path}", flush=True)
            return text_windows(path, tokenizer, nsamples, seed, seqlen)

        calibrate.get_calib_loaders = get_calib_loaders
    sys.argv = ["lmdeploy", *args]
    from lmdeploy.cli import run

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
'''
