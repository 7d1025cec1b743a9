"""camp: the InternLM full-chain course kit (书生·浦语 实战营).

`import camp` stays cheap (no torch/transformers at import): names resolve on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first access
# Submodule names never equal a public name here: importing camp.x would shadow camp.x().
_LAZY = {
    # the chain's verbs
    "doctor": "camp.runtime.doctor:doctor",
    "profile": "camp.runtime.hardware:profile",
    "catalogue": "camp.models.listing:catalogue",
    "download": "camp.models.hub:download",
    "resolve": "camp.models.hub:resolve",
    "chat": "camp.conversation.session:chat",
    "ChatSession": "camp.conversation.session:ChatSession",
    "webdemo": "camp.conversation.webdemo:launch",
    "finetune": "camp.training.stage:finetune",
    "evaluate": "camp.evaluation.stage:evaluate",
    "serve": "camp.serving.stage:serve",
    "quantize": "camp.serving.awq:quantize",
    "bench": "camp.serving.bench:bench",
    "agent": "camp.agents.react:agent",
    "tool": "camp.agents.tools:tool",
    "report": "camp.course:report",
    "Job": "camp.runtime.jobs:Job",
    "CampError": "camp.runtime.errors:CampError",
    # the stage packages
    "models": "camp.models:",
    "data": "camp.data:",
    "training": "camp.training:",
    "evaluation": "camp.evaluation:",
    "serving": "camp.serving:",
    "conversation": "camp.conversation:",
    "agents": "camp.agents:",
    "homework": "camp.homework:",
    "rag": "camp.rag:",
    "multimodal": "camp.multimodal:",
    "runtime": "camp.runtime:",
    # modules under their earlier short names (lessons and students' code use them)
    "envs": "camp.runtime.envs:",
    "jobs": "camp.runtime.jobs:",
    "hardware": "camp.runtime.hardware:",
    "tiny": "camp.models.tiny:",
    "internlm2": "camp.models.internlm2:",
    "sandbox": "camp.agents.sandbox:",
    "agent_data": "camp.agents.traces:",
}

__all__ = sorted(_LAZY)


_views_in_use = False


def use_views() -> None:
    """Report progress through camp.ui's views (widgets in JupyterLab, tqdm in a terminal). The core reports to
    camp.runtime.progress, which prints plain lines until this is called; `camp`'s public names and the CLI call it,
    code that imports the stage packages directly stays headless."""
    global _views_in_use
    if not _views_in_use:
        from camp.runtime import progress
        from camp.ui.progress import AutoView

        progress.use(AutoView())
        _views_in_use = True


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'camp' has no attribute {name!r}")
    use_views()
    mod, _, attr = target.partition(":")
    module = importlib.import_module(mod)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
