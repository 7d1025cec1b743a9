"""The RAG traces: the answer is copied from a passage in the prompt, held-out entities never appear in training."""

from __future__ import annotations

from camp.rag import traces
from camp.rag.kb import CONTEXT_HEADER, QUESTION_HEADER, SYSTEM


def test_each_trace_asks_a_value_that_stands_in_one_of_its_passages():
    recs = traces.rag_traces(200, seed=3)
    assert len(recs) == 200
    for r in recs:
        system, user, assistant = r["messages"]
        assert system == {"role": "system", "content": SYSTEM}
        assert user["content"].startswith(CONTEXT_HEADER + "\n[1] ")
        assert f"\n{QUESTION_HEADER}{r['meta']['question']}" in user["content"]
        gold = r["meta"]["passages"][r["meta"]["gold"]]
        assert assistant["content"] == r["meta"]["answer"] and r["meta"]["answer"] in gold
        assert r["meta"]["entity"] in gold
    assert {r["meta"]["lang"] for r in recs} == {"zh", "en"}
    assert len({r["meta"]["attribute"] for r in recs}) == len(traces.ATTRIBUTES)
    assert {r["meta"]["gold"] for r in recs} == {0, 1, 2}  # the answer is not always in the same place
    assert any(any(p.startswith("##") is False and "##" not in p and "XTuner" in p for p in r["meta"]["passages"])
               for r in recs)  # course passages are among the distractors


def test_heldout_entities_never_appear_in_training_traces():
    train = traces.rag_traces(3000)
    seen = {r["meta"]["entity"] for r in train}
    for r in train:
        seen |= {line[3:] for p in r["meta"]["passages"] for line in p.splitlines()[:1] if line.startswith("## ")}
    cards = traces.heldout_cards(12)
    assert all(traces.is_heldout(c["entity"]) for c in cards)
    assert not seen & {c["entity"] for c in cards}
    assert not any(traces.is_heldout(e) for e in seen)


def test_heldout_document_and_questions(tmp_path):
    cards = traces.heldout_cards(6)
    doc = traces.write_document(cards, tmp_path / "handbook.md")
    text = doc.read_text(encoding="utf-8")
    qs = traces.questions(cards, per_card=2)
    assert len(qs) == 12
    for q in qs:
        assert q["answer"] in text and q["entity"] in q["question"]
    assert traces.exact(" 41877。", "41877") and not traces.exact("port 41877", "41877")


def test_traces_are_deterministic_and_records_train_as_messages():
    a, b = traces.rag_traces(5, seed=1), traces.rag_traces(5, seed=1)
    assert a == b
    assert traces.for_training(a)[0] == {"messages": a[0]["messages"]}
