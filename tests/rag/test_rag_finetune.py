"""Teaching the tiny model to answer from retrieved passages, for real: XTuner fine-tune on RAG traces (the lesson's
settings and run folder, shared with notebook 08), then questions about a handbook no trace mentions, asked through
`transformers serve` with the hybrid retriever's passages — and without them."""

from __future__ import annotations

import shutil
import uuid

import pytest

from camp import models, serving, training
from camp.rag import traces
from camp.rag.kb import build
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CARDS = 10  # 20 questions


@pytest.fixture(scope="module")
def tuned_endpoint():
    s = traces.lesson_settings("cpu-tiny")
    recs = traces.rag_traces(s["traces"], k=s["k"])  # the lesson's traces: the run folder is shared with it
    name = f"test-rag-{uuid.uuid4().hex[:6]}"
    r = training.finetune("tiny", traces.for_training(recs), name=name, profile="cpu-tiny", method=s["method"],
                          lr=s["lr"], max_iters=s["max_iters"], show=False,
                          run_dir=traces.lesson_run_dir("tiny", s, "cpu-tiny"))
    assert r.merged_dir is not None
    ep = serving.serve(name, profile="cpu-tiny")
    try:
        yield ep
    finally:
        ep.stop()
        models.unregister(name)


@pytest.fixture(scope="module")
def handbook_kb(tmp_path_factory):
    cards = traces.heldout_cards(CARDS)
    doc = traces.write_document(cards, tmp_path_factory.mktemp("handbook") / "handbook.md")
    kb = build([ROOT / "assets/corpus", doc], name=f"test-hb-{uuid.uuid4().hex[:6]}", chunk_size=traces.CARD_SIZE,
               show=False)
    yield kb, traces.questions(cards)
    shutil.rmtree(kb.folder, ignore_errors=True)


def test_rag_tuned_tiny_answers_heldout_questions_from_retrieved_passages(tuned_endpoint, handbook_kb):
    kb, qs = handbook_kb
    seen = {r["meta"]["entity"] for r in traces.rag_traces(traces.lesson_settings("cpu-tiny")["traces"])}
    assert not seen & {q["entity"] for q in qs}  # no held-out entity was ever trained on

    def ask(messages):
        return tuned_endpoint.chat(messages, max_tokens=24, temperature=0)

    k = traces.lesson_settings("cpu-tiny")["k"]
    with_r = traces.answer_table(qs, ask, retrieve=lambda q, k: kb.search(q, k), k=k)
    without = traces.answer_table(qs, ask)
    print(with_r.to_string())
    print(without.to_string())
    assert with_r.exact.mean() >= 0.8, with_r
    assert without.exact.mean() < 0.2, without


def test_the_answer_comes_from_the_passage(tuned_endpoint, handbook_kb):
    """Change the value in the passage: the tuned model's answer follows the passage, not anything it learned."""
    import random

    kb, qs = handbook_kb
    followed = 0
    for i, q in enumerate(qs[:6]):
        hits = kb.search(q["question"], traces.lesson_settings("cpu-tiny")["k"])
        make = traces.ATTRIBUTES[q["attribute"]][0]  # another value of the same kind, that no card holds
        fake = next(v for v in (make(random.Random(f"fake-{i}-{j}"), q["lang"]) for j in range(100))
                    if v != q["answer"])
        passages = [h.text.replace(q["answer"], fake) for h in hits]
        reply = tuned_endpoint.chat(traces.prompt_messages(q["question"], passages), max_tokens=24, temperature=0)
        followed += traces.exact(reply, fake)
    assert followed >= 4
