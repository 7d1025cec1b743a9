"""Start-up hook for XTuner 0.2.0 processes run by camp (train, convert, merge). Only XTuner Jobs get this folder
on PYTHONPATH (camp.xtuner_compat.job_env), so no other Python sees it.

Workaround (1) of four (docs/tool-notes.md, "XTuner 0.2.0 on a CPU"): `import xtuner.dataset` imports
`xtuner.dataset.internvl_dataset`, which imports torchvision at start-up. camp's xtuner env leaves torchvision out
on purpose: PyPI's torchvision is CUDA-linked and, beside the CPU torch 2.13 build, even transformers' imports
fail (`operator torchvision::nms does not exist`). Text fine-tuning never uses the InternVL dataset, so while
torchvision is absent that one module is replaced by a stub whose dataset class explains the problem if used.
An env that does have torchvision (a GPU conda env adopted with `camp env register`) loads the real module.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_TARGET = "xtuner.dataset.internvl_dataset"


class _InternVLStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET or importlib.util.find_spec("torchvision") is not None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        class InternVL_V1_5_Dataset:  # noqa: N801 - the name XTuner imports
            def __init__(self, *args, **kwargs):
                raise ImportError(
                    "InternVL datasets need torchvision, which camp's xtuner environment leaves out "
                    "(PyPI's torchvision is CUDA-linked and breaks beside a CPU torch). Install a torch/torchvision "
                    "pair that matches into the xtuner env to fine-tune InternVL."
                )

        module.InternVL_V1_5_Dataset = InternVL_V1_5_Dataset


sys.meta_path.insert(0, _InternVLStub())


def _record_cuda_peak(path):
    """CAMP_CUDA_PEAK_FILE (set by benchmarks/gpu_check.py only): write the process's peak CUDA memory there at exit.
    mmengine resets torch's peak counter every time it logs `memory:`, so the peak is kept across resets here."""
    import atexit
    import json

    import torch

    peak = {"allocated": 0, "reserved": 0}
    reset = torch.cuda.reset_peak_memory_stats

    def take():
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            peak["allocated"] = max(peak["allocated"], torch.cuda.max_memory_allocated())
            peak["reserved"] = max(peak["reserved"], torch.cuda.max_memory_reserved())

    def reset_keeping_peak(*args, **kwargs):
        take()
        return reset(*args, **kwargs)

    def write():
        take()
        if not peak["allocated"]:
            return  # a process that used no GPU (xtuner convert on the CPU) leaves the training's reading alone
        try:
            with open(path) as f:
                before = json.load(f)
        except (OSError, ValueError):
            before = {}
        mib = {"max_allocated_mib": peak["allocated"] / 2**20, "max_reserved_mib": peak["reserved"] / 2**20}
        with open(path, "w") as f:
            json.dump({k: max(v, before.get(k, 0)) for k, v in mib.items()}, f)

    torch.cuda.reset_peak_memory_stats = reset_keeping_peak
    atexit.register(write)


if os.environ.get("CAMP_CUDA_PEAK_FILE"):
    _record_cuda_peak(os.environ["CAMP_CUDA_PEAK_FILE"])


def _chain():
    # This file shadows any other sitecustomize (Debian's, a conda env's): run that one too.
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
