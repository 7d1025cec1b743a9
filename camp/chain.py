"""The full chain, in course order: one row per stage. The CLI builds its commands in this order, `camp course` and
the README's lesson table follow the lessons named here (a test checks both), and docs/adding-a-stage.md says how
to add a row. A new stage is one package (camp/<package>/) plus one row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """One stage of the chain."""

    key: str  # short name
    title: str  # what it is, as the README's lesson table says it
    package: str  # where its code lives
    lesson: str | None  # the notebook that teaches it (notebooks/<lesson>.ipynb)
    commands: tuple[str, ...]  # its `camp` subcommands, in the order `camp --help` lists them
    api: tuple[str, ...]  # its public functions
    tool: str = ""  # the real tool it drives
    env: str | None = None  # that tool's environment (environments/<env>.txt)


CHAIN: tuple[Link, ...] = (
    Link("setup", "the machine, profile, environments", "camp.runtime", "00_setup",
         ("doctor", "env"), ("camp.doctor", "camp.profile", "camp.envs")),
    Link("models", "the InternLM2-Chat-1.8B demo: download, chat widget, CLI, web demo", "camp.models",
         "01_chat_demo", ("models", "download", "tiny"), ("camp.catalogue", "camp.download", "camp.resolve"),
         "ModelScope", None),
    Link("chat", "", "camp.conversation", None, ("chat", "webdemo"), ("camp.chat", "camp.webdemo"),
         "transformers, Streamlit"),
    Link("finetune", "self-cognition LoRA with XTuner: data, plan, train, merge", "camp.training",
         "02_finetune_xtuner", ("data", "finetune"), ("camp.data.self_cognition", "camp.finetune"), "XTuner",
         "xtuner"),
    Link("evaluate", "OpenCompass: base vs fine-tuned on the course sets", "camp.evaluation",
         "03_evaluate_opencompass", ("eval",), ("camp.evaluate",), "OpenCompass", "opencompass"),
    Link("deploy", "deployment: endpoint, API chat, benchmark, AWQ (CUDA)", "camp.serving", "04_deploy_lmdeploy",
         ("serve", "quantize", "bench"), ("camp.serve", "camp.quantize", "camp.bench"), "LMDeploy", "lmdeploy"),
    Link("agents", "Lagent ReAct agents: tools, a custom tool, the sandbox, agent fine-tuning", "camp.agents",
         "05_agents_lagent", ("agent",), ("camp.agent", "camp.tool"), "Lagent"),
    Link("multimodal", "multimodal: image chat, serving with images, vision-language fine-tune (LLaVA)",
         "camp.multimodal", "07_multimodal", ("tiny-vl",), ("camp.multimodal",),
         "LMDeploy VLM pipeline, XTuner LLaVA", "xtuner"),
)


def lessons() -> list[Link]:
    """The stages that have a lesson, in course order."""
    return [link for link in CHAIN if link.lesson]


def commands() -> list[str]:
    """Every stage's `camp` subcommands, in chain order."""
    return [c for link in CHAIN for c in link.commands]


def stage_of(command: str) -> Link | None:
    return next((link for link in CHAIN if command in link.commands), None)
