"""Perplexity (ppl) scoring of one multiple-choice question, by hand, in the kernel: what OpenCompass's `_ppl_`
dataset configs do, made visible for the evaluation lesson.

    r = choose("tiny", {"question": "…", "A": "…", "B": "…", "C": "…", "D": "…", "answer": "B"})
    r.table     # option, text, ppl — the lowest perplexity is the model's choice
    r.choice, r.correct

Each option is put after the question as the assistant's reply (the model's own chat template) and the model's
perplexity on the option's tokens is measured: exp(mean negative log-likelihood). Nothing is generated, so the
answer's format cannot go wrong — which is why base models are scored this way. (OpenCompass scores the whole
prompt + option text by default; conditioning on the question, as here, compares the options alone.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LETTERS = ("A", "B", "C", "D")


@dataclass
class PplChoice:
    question: str
    answer: str | None
    rows: list = field(default_factory=list)  # {option, text, tokens, ppl}

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["option", "text", "tokens", "ppl"])

    @property
    def choice(self) -> str:
        return min(self.rows, key=lambda r: r["ppl"])["option"]

    @property
    def correct(self) -> bool | None:
        return None if self.answer is None else self.choice == self.answer

    def __repr__(self) -> str:
        return f"<PplChoice {self.choice} (answer {self.answer}): " + ", ".join(
            f"{r['option']} {r['ppl']:.3g}" for r in self.rows) + ">"


def choose(model, record: dict, *, profile=None) -> PplChoice:
    """Score the options of `record` (question, A–D, answer) by the model's perplexity; see the module doc."""
    import torch

    from camp.conversation.local import load_local
    from camp.models.hub import resolve

    backend = load_local(resolve(model, profile=profile))
    tok, net = backend.tokenizer, backend.model
    prompt = backend.encode([{"role": "user", "content": record["question"]}])["input_ids"]
    result = PplChoice(record["question"], record.get("answer"))
    for letter in (x for x in LETTERS if x in record):
        option = tok(str(record[letter]), add_special_tokens=False, return_tensors="pt")["input_ids"].to(prompt.device)
        ids = torch.cat([prompt, option], dim=1)
        with torch.no_grad():
            logits = net(input_ids=ids).logits[0, :-1].float()
        targets = ids[0, 1:]
        start = prompt.shape[1] - 1  # logits at position t predict token t + 1: the option's tokens only
        nll = torch.nn.functional.cross_entropy(logits[start:], targets[start:], reduction="mean").item()
        result.rows.append({"option": letter, "text": str(record[letter]), "tokens": option.shape[1],
                            "ppl": round(math.exp(nll), 4)})
    return result
