"""The result of a fine-tune: the registered model, its folders, the loss curve and the chat hook's answers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from camp.runtime import markers
from camp.runtime.errors import CampError
from camp.training import plan as _planner


# ============================================================================ the result
@dataclass
class FinetuneResult:
    run_dir: Path
    config_path: Path
    work_dir: Path
    checkpoint: Path | None
    adapter_dir: Path | None
    merged_dir: Path | None
    name: str | None
    base: str
    base_dir: Path
    plan: object
    max_iters: int
    losses: list = field(default_factory=list)  # [(iter, loss)]
    samples: dict = field(default_factory=dict)  # {iter: {question: answer}} from XTuner's chat hook
    seconds: dict = field(default_factory=dict)  # per stage
    resumed_from: list = field(default_factory=list)  # iterations training was resumed from
    reused: bool = False  # True: the run folder held a finished run; nothing was trained

    @property
    def final_answers(self) -> dict:
        return self.samples[max(self.samples)] if self.samples else {}

    def compare(self, questions: list[str] | str | None = None, **gen):
        """Before/after: each question answered by the base model and the fine-tuned one (greedy, camp.chat,
        a fresh conversation per question) → pandas DataFrame (question, before, after)."""
        import pandas as pd

        from camp.conversation.session import chat

        if self.merged_dir is None:
            raise CampError("this run has no merged model (finetune(..., merge=False)) — nothing to compare")
        if questions is None:
            questions = markers.read_json(self.run_dir / "run.json").get("evaluation_inputs") or [_identity_question()]
        elif isinstance(questions, str):
            questions = [questions]
        gen = {"temperature": 0, "max_new_tokens": 256, **gen}
        rows = []
        for q in questions:
            before = chat(self.base_dir, **gen).ask(q)
            after = chat(self.merged_dir, **gen).ask(q)
            rows.append({"question": q, "before": before, "after": after})
        return pd.DataFrame(rows, columns=["question", "before", "after"])

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "config_path": str(self.config_path), "work_dir": str(self.work_dir),
            "checkpoint": _s(self.checkpoint), "adapter_dir": _s(self.adapter_dir), "merged_dir": _s(self.merged_dir),
            "name": self.name, "base": self.base, "base_dir": str(self.base_dir), "max_iters": self.max_iters,
            "plan": self.plan.to_dict() if hasattr(self.plan, "to_dict") else self.plan,
            "losses": [list(x) for x in self.losses],
            "samples": {str(k): v for k, v in self.samples.items()},
            "seconds": self.seconds, "resumed_from": self.resumed_from, "reused": self.reused,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneResult:
        p = d.get("plan")
        with contextlib.suppress(TypeError, AttributeError):
            p = _planner.Plan(**{k: v for k, v in p.items() if k != "effective_batch"})
        return cls(run_dir=Path(d["run_dir"]), config_path=Path(d["config_path"]), work_dir=Path(d["work_dir"]),
                   checkpoint=_p(d.get("checkpoint")), adapter_dir=_p(d.get("adapter_dir")),
                   merged_dir=_p(d.get("merged_dir")), name=d.get("name"), base=d.get("base", ""),
                   base_dir=Path(d.get("base_dir", "")), plan=p, max_iters=int(d.get("max_iters", 0)),
                   losses=[tuple(x) for x in d.get("losses", [])],
                   samples={int(k): v for k, v in d.get("samples", {}).items()},
                   seconds=d.get("seconds", {}), resumed_from=d.get("resumed_from", []), reused=d.get("reused", False))

    def __repr__(self) -> str:
        loss = f", final loss {self.losses[-1][1]:.4g}" if self.losses else ""
        return (f"<FinetuneResult {self.name or '(not registered)'}: {self.base} → {self.merged_dir or self.adapter_dir}"
                f", {self.max_iters} iterations{loss}>")

    def _repr_html_(self) -> str:
        from camp.ui.html import finetune_html

        return finetune_html(self)


def _s(p) -> str | None:
    return str(p) if p is not None else None


def _p(s) -> Path | None:
    return Path(s) if s else None


def _identity_question() -> str:
    from camp.models.tiny import IDENTITY_QUESTION

    return IDENTITY_QUESTION




