"""ppl scoring by hand: the option the model finds least surprising after the question is its choice."""

from __future__ import annotations

import pytest

from camp.evaluation.ppl import choose
from camp.models.tiny import IDENTITY_ANSWER, IDENTITY_QUESTION


@pytest.mark.integration
def test_the_answer_tiny_was_trained_on_has_the_lowest_perplexity():
    record = {"question": IDENTITY_QUESTION, "A": "我是一只猫。", "B": IDENTITY_ANSWER, "C": "今天天气很好。",
              "D": "XTuner 是评测工具。", "answer": "B"}
    r = choose("tiny", record, profile="cpu-tiny")
    assert [x["option"] for x in r.rows] == ["A", "B", "C", "D"] and all(x["ppl"] >= 1 for x in r.rows)
    assert r.choice == "B" and r.correct and r.rows[1]["ppl"] < 1.5  # trained until greedy-exact
    assert list(r.table.columns) == ["option", "text", "tokens", "ppl"]
