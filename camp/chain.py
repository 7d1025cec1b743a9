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
    Link("overview",
         "L1: the full chain, the model family and what fits here, the decision flow, a needle in a haystack",
         "camp.conversation.needle", "00_overview", (), ("camp.catalogue", "camp.conversation.needle.probe")),
    Link("setup", "the machine, profile, environments", "camp.runtime", "01_setup",
         ("doctor", "env"), ("camp.doctor", "camp.profile", "camp.envs")),
    Link("models", "the InternLM2-Chat-1.8B demo (every GPU profile): download, chat widget, CLI, web demo",
         "camp.models", "02_chat_demo", ("models", "download", "tiny"),
         ("camp.catalogue", "camp.download", "camp.resolve"), "ModelScope", None),
    Link("chat", "", "camp.conversation", None, ("chat", "webdemo"), ("camp.chat", "camp.webdemo"),
         "transformers, Streamlit"),
    Link("finetune", "fine-tuning kinds, LoRA/QLoRA and their memory; self-cognition LoRA with XTuner: data, plan, "
         "train, merge; the XTuner commands", "camp.training", "03_finetune_xtuner", ("data", "finetune"),
         ("camp.data.self_cognition", "camp.finetune"), "XTuner", "xtuner"),
    Link("evaluate", "gen vs ppl, objective vs subjective; OpenCompass: base vs fine-tuned on the course sets; the "
         "command", "camp.evaluation", "04_evaluate_opencompass", ("eval",), ("camp.evaluate",), "OpenCompass",
         "opencompass"),
    Link("deploy", "TurboMind vs PyTorch, KV cache and W4A16 memory arithmetic; endpoint, API chat, benchmark plot, "
         "AWQ (CUDA)", "camp.serving", "05_deploy_lmdeploy", ("serve", "quantize", "bench"),
         ("camp.serve", "camp.quantize", "camp.bench"), "LMDeploy", "lmdeploy"),
    Link("agents", "the ReAct loop; Lagent agents: tools, a custom tool, the sandbox, agent fine-tuning",
         "camp.agents", "06_agents_lagent", ("agent",), ("camp.agent", "camp.tool"), "Lagent"),
    Link("multimodal", "image chat, serving with images, a vision-language fine-tune (LLaVA); InternVL2 / XComposer2 "
         "on GPU", "camp.multimodal", "07_multimodal", ("tiny-vl",), ("camp.multimodal",),
         "LMDeploy VLM pipeline, XTuner LLaVA", "xtuner"),
    Link("rag", "RAG knowledge-base assistant: documents, embeddings, hybrid retrieval, grounded answers, "
         "LlamaIndex and HuixiangDou", "camp.rag", "08_rag", ("rag",), ("camp.rag.build", "camp.rag.serve"),
         "LlamaIndex, HuixiangDou", "llamaindex"),
    Link("homework", "homework on nbgrader: release, submit, collect, sandboxed grading, feedback, gradebook",
         "camp.homework", None, ("homework",),
         ("camp.homework.release", "camp.homework.submit", "camp.homework.collect", "camp.homework.grade",
          "camp.homework.feedback", "camp.homework.gradebook", "camp.homework.mark"), "nbgrader"),
)


def lessons() -> list[Link]:
    """The stages that have a lesson, in course order."""
    return [link for link in CHAIN if link.lesson]


def commands() -> list[str]:
    """Every stage's `camp` subcommands, in chain order."""
    return [c for link in CHAIN for c in link.commands]


def stage_of(command: str) -> Link | None:
    return next((link for link in CHAIN if command in link.commands), None)
