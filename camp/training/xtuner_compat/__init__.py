"""XTuner on a CPU: every workaround camp needs, in one place (docs/tool-notes.md, "XTuner 0.2.0 on a CPU").

Measured with xtuner 0.2.0, mmengine 0.10.6, transformers 4.48.0, peft 0.14.0 and torch 2.13.0 (CPU build), in
the order they failed:

 (1) XTuner imports torchvision at start-up (`xtuner/dataset/internvl_dataset.py`), and camp's xtuner env has no
     torchvision on purpose → `site/sitecustomize.py`, put on PYTHONPATH of XTuner Jobs only (`job_env()`).
 (2) `torch.cpu.is_bf16_supported` does not exist in torch 2.13, XTuner 0.2.0 calls it when it builds the model
     → `BF16_PATCH`, the first lines of a CPU config (it must run when the config is loaded).
 (3) mmengine's `AmpOptimWrapper` is GPU-only → `OptimWrapper` with a float32 model (`CPU["optim_wrapper"]`).
 (4) `DefaultSampler` with `max_iters` sleeps 2 s every time the dataloader restarts (mmengine 0.10.6's
     `_InfiniteDataloaderIterator`, i.e. after every pass over a small dataset) → `InfiniteSampler`.

Two more, found here:
 (5) resuming: XTuner 0.2.0 (`get_seed_from_checkpoint`) and mmengine 0.10.6 call `torch.load` without
     `weights_only`; torch >= 2.6 then defaults to weights_only=True and refuses their own checkpoints (they pickle
     the run's metadata: "Weights only load failed") → TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in `job_env()`. These
     Jobs only load checkpoints the same run wrote. This one applies on GPUs too.
 (6) the tiny model's LoRA targets (`HEAD_TARGETS`): it must also adapt its output head, said as a regex.
 (7) started from a Jupyter kernel, a Job inherits MPLBACKEND=module://matplotlib_inline.backend_inline, and
     `import xtuner.dataset` (refcoco_json imports matplotlib.pyplot) fails on it → MPLBACKEND=Agg in `job_env()`.
GPU profiles otherwise use XTuner's own settings (AmpOptimWrapper, bf16/fp16, DefaultSampler); (1) steps aside when
torchvision is importable.
"""

from __future__ import annotations

import os
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"


def job_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Extra environment for a Job running XTuner (train, `xtuner convert …`): workarounds (1) via PYTHONPATH, (5)
    and (7). Child processes (`xtuner convert` starts `python merge.py`) inherit it."""
    current = (os.environ if environ is None else environ).get("PYTHONPATH", "")
    return {"PYTHONPATH": str(SITE_DIR) + (os.pathsep + current if current else ""),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "MPLBACKEND": "Agg"}


# (2) XTuner configs are parsed lazily: mmengine turns every `import x` in a config into a lazy object, so
# `import torch; torch.cpu.is_bf16_supported = …` patches a placeholder, and a call on a lazy object raises.
# `__import__` is an ordinary call that mmengine leaves alone: it patches the real torch when the config loads,
# before XTuner builds the model (train.py, and pth_to_hf, which loads the same config).
BF16_PATCH = '''\
# CPU workaround (XTuner 0.2.0 + torch 2.13 CPU build): XTuner asks torch.cpu.is_bf16_supported(), which this
# torch lacks. It is defined here because configs are parsed lazily (`import torch` below is only a placeholder
# until XTuner builds objects), so the patch must be a real call that runs while the config is read.
if not hasattr(__import__("torch").cpu, "is_bf16_supported"):
    __import__("torch").cpu.is_bf16_supported = lambda: False
'''

# (3) and (4): what a CPU config uses instead of XTuner's GPU defaults, with the comment the config shows.
CPU = {
    "optim_wrapper": "OptimWrapper",
    "optim_comment": "CPU workaround: AmpOptimWrapper (mixed precision) is GPU-only in mmengine 0.10.6 → plain "
                     "OptimWrapper, float32 model",
    "sampler": "InfiniteSampler",
    "sampler_comment": "CPU workaround: DefaultSampler sleeps 2 s at every dataloader restart when training by "
                       "iterations (mmengine 0.10.6) → InfiniteSampler never restarts",
    "torch_dtype": "torch.float32",
    "dist_backend": "gloo",
}

# The tiny model (hidden size 64) cannot learn a new answer through its frozen output head: LoRA goes on the head
# as well (XTuner's find_all_linear_names leaves `lm_head` out). Written as a regex, not a list: peft 0.14 sees the
# word "lm_head" in a list of targets and then also saves the base head's weights with the adapter, which
# `xtuner convert pth_to_hf` cannot do (it builds the base model on the meta device: "Cannot copy out of meta
# tensor"). Module names are matched in full.
HEAD_TARGETS = r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|.*_head"
