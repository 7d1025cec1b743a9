"""camp: the InternLM full-chain course kit (书生·浦语 实战营).

`import camp` stays cheap (no torch/transformers at import): names resolve on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first access
# Submodule names never equal a public name here: importing camp.x would shadow camp.x().
_LAZY = {
    "doctor": "camp.checkup:doctor",
    "profile": "camp.hardware:profile",
    "download": "camp.models:download",
    "resolve": "camp.models:resolve",
    "webdemo": "camp.ui.webdemo:launch",
    "catalogue": "camp.models:catalogue",
    "chat": "camp.conversation:chat",
    "ChatSession": "camp.conversation:ChatSession",
    "report": "camp.course:report",
    "finetune": "camp.training:finetune",
    "evaluate": "camp.evaluation:evaluate",
    "serve": "camp.serving:serve",
    "quantize": "camp.serving:quantize",
    "bench": "camp.throughput:bench",
    "agent": "camp.agents:agent",
    "tool": "camp.agents:tool",
    "data": "camp.data:",
    "Job": "camp.jobs:Job",
    "envs": "camp.envs:",
    "models": "camp.models:",
    "evaluation": "camp.evaluation:",
    "serving": "camp.serving:",
    "agents": "camp.agents:",
    "sandbox": "camp.sandbox:",
    "agent_data": "camp.agent_data:",
    "jobs": "camp.jobs:",
    "hardware": "camp.hardware:",
    "tiny": "camp.tiny:",
    "internlm2": "camp.internlm2:",
    "CampError": "camp.errors:CampError",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'camp' has no attribute {name!r}")
    mod, _, attr = target.partition(":")
    module = importlib.import_module(mod)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
