"""Held-out accuracy of a vision-language model: greedy answers compared exactly with the expected ones.

    s = camp.multimodal.score.score("tiny-vl", camp.multimodal.score.held_out(100, seed=9, task="side"))
    s.accuracy, s.wrong[:3]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from camp.multimodal import scenes


@dataclass
class Score:
    model: str
    accuracy: float
    n: int
    wrong: list = field(default_factory=list)  # (question, expected, answered)

    def __repr__(self) -> str:
        return f"<Score {self.model}: {self.accuracy:.1%} exact of {self.n}>"


def held_out(n: int, seed: int, task: str = "side") -> list[tuple]:
    """n generated (picture, question, answer) the model never trained on (seeds apart from the build's and the
    lesson's training sets)."""
    return [(sc.image(), q, a) for sc, q, a in scenes.examples(n, seed, task)]


def score(model, examples, *, base_url: str | None = None, api_key: str | None = None,
          max_new_tokens: int = 32) -> Score:
    """The share of `examples` ((picture, question, answer)) answered exactly, greedy, one fresh turn each."""
    from camp.conversation.session import chat

    s = chat(model, base_url=base_url, api_key=api_key, max_new_tokens=max_new_tokens, temperature=0)
    ok, wrong = 0, []
    for image, question, answer in examples:
        s.reset()
        got = s.ask(question, image=image).strip()
        if got == answer:
            ok += 1
        else:
            wrong.append((question, answer, got))
    n = len(examples)
    return Score(str(model), ok / n if n else 0.0, n, wrong)
