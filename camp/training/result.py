"""The result of a fine-tune: the registered model, its folders, the loss curve and the chat hook's answers.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

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
            questions = _read_json(self.run_dir / "run.json").get("evaluation_inputs") or [_identity_question()]
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
        from camp.runtime.i18n import t
        from camp.ui.progress import loss_svg

        e = html.escape
        rows = [(t("注册名", "registered name"),
                 f"<code>{e(self.name)}</code> — <code>camp.chat({e(repr(self.name))})</code>" if self.name else "—"),
                (t("基座模型", "base model"), f"{e(self.base)} <small>({e(str(self.base_dir))})</small>"),
                (t("计划", "plan"), e(self.plan.headline()) if hasattr(self.plan, "headline") else "—"),
                (t("迭代次数", "iterations"), f"{self.max_iters}" + (
                    t(f"（从 {', '.join(map(str, self.resumed_from))} 续跑）",
                      f" (resumed from {', '.join(map(str, self.resumed_from))})") if self.resumed_from else "")
                 + (t(" —— 复用了已完成的运行", " — reused a finished run") if self.reused else "")),
                (t("合并后的模型", "merged model"), f"<code>{e(_s(self.merged_dir) or '—')}</code>"),
                (t("适配器（adapter）", "adapter"), f"<code>{e(_s(self.adapter_dir) or '—')}</code>"),
                (t("配置文件", "config"), f"<code>{e(str(self.config_path))}</code>"),
                (t("用时", "time"), " · ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))]
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                        for k, v in rows)
        answers = "".join(f"<li><b>{e(q)}</b> → {e(a)}</li>" for q, a in self.final_answers.items())
        head = t(f"微调完成：{e(self.base)}", f"Fine-tuned {e(self.base)}")
        hook = t("XTuner 训练中最后一次对话检查的回答：", "Last answers of the chat hook:")
        return (f"<div class='camp-finetune-result'><b>{head}</b><table>{table}</table>{loss_svg(self.losses)}"
                + (f"<div class='camp-samples'>{hook}<ul>{answers}</ul></div>" if answers else "") + "</div>")


def _s(p) -> str | None:
    return str(p) if p is not None else None


def _p(s) -> Path | None:
    return Path(s) if s else None


def _identity_question() -> str:
    from camp.models.tiny import IDENTITY_QUESTION

    return IDENTITY_QUESTION


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
