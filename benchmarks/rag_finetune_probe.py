"""Probe: can the tiny model learn to answer from retrieved passages? Fine-tune on RAG traces with XTuner, then ask
held-out questions about a document no trace mentions, with and without retrieval.

    python benchmarks/rag_finetune_probe.py [--n 3000] [--iters 800] [--lr 2e-3] [--method full] [--k 3]
                                            [--cards 12] [--seed 0] [--model tiny] [--keep]

Defaults: lesson 08's settings on cpu-tiny (camp.rag.traces.LESSON["cpu"]). Steps:
  1. camp.rag.traces.rag_traces(n) → camp.finetune(model, …) (XTuner, convert, merge);
  2. a held-out handbook (camp.rag.traces.heldout_cards) written to a file and indexed with the course documents;
  3. each question: the hybrid retriever's k passages → the prompt kb.ask sends → greedy reply (transformers,
     in-process, the tokenizer's chat template: what `transformers serve` does) → exact match with the value;
     and the same question with no passages.
Prints: retrieval (the right card among the k), exact with retrieval, exact without, some replies, wall times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def greedy_fn(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    stop = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]

    def ask(messages, max_new_tokens=24):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    return ask, tok


def main() -> int:
    from camp.rag import traces

    d = traces.LESSON["cpu"]
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=d["traces"])
    ap.add_argument("--iters", type=int, default=d["max_iters"])
    ap.add_argument("--lr", type=float, default=d["lr"])
    ap.add_argument("--method", default=d["method"])
    ap.add_argument("--k", type=int, default=d["k"])
    ap.add_argument("--cards", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--course-distractors", type=float, default=0.5)
    ap.add_argument("--keep", action="store_true", help="keep the fine-tuned model registered")
    a = ap.parse_args()

    from camp import models
    from camp.rag.kb import build, folder_of
    from camp.training.stage import finetune

    recs = traces.rag_traces(a.n, seed=a.seed, k=a.k, course_distractors=a.course_distractors)
    from camp.models import tiny

    _, tok0 = greedy_fn(tiny.default_dir()) if a.model == "tiny" else (None, None)
    if tok0 is not None:
        lens = sorted(len(tok0.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                      for r in recs[:200])
        print(f"trace length (tokens): median {lens[len(lens) // 2]}, max {lens[-1]}")
    name = f"probe-rag-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="camp-rag-probe-"))
    kb_name = f"probe-{uuid.uuid4().hex[:6]}"
    try:
        t0 = time.time()
        settings = {"traces": a.n, "method": a.method, "lr": a.lr, "max_iters": a.iters, "k": a.k}
        lesson = settings == traces.lesson_settings("cpu-tiny") and a.seed == 0
        # the lesson's own settings train into the lesson's run folder: notebook 08 and its test then reuse it
        run_dir = traces.lesson_run_dir(a.model, settings, "cpu-tiny") if lesson else tmp / "run"
        print(f"run folder: {run_dir}", flush=True)
        r = finetune(a.model, traces.for_training(recs), name=name, profile="cpu-tiny", method=a.method, lr=a.lr,
                     max_iters=a.iters, run_dir=run_dir, show=False,
                     evaluation_inputs=[recs[0]["messages"][1]["content"]])
        t_train = time.time() - t0
        cards = traces.heldout_cards(a.cards, seed=a.seed)
        doc = traces.write_document(cards, tmp / "docs" / "handbook.md")
        kb = build([ROOT / "assets/corpus", doc.parent], name=kb_name, chunk_size=traces.CARD_SIZE, show=False)
        qs = traces.questions(cards, seed=a.seed)
        ask, _ = greedy_fn(r.merged_dir)
        t0 = time.time()
        with_r = traces.answer_table(qs, ask, retrieve=lambda q, k: kb.search(q, k), k=a.k)
        without = traces.answer_table(qs, ask)
        t_test = time.time() - t0
        print(with_r.head(8).to_string())
        print(without.head(4).to_string())
        print(f"held-out questions: {len(qs)} ({a.cards} cards); retrieved the right card: {with_r.retrieved.mean():.0%}")
        print(f"exact with retrieval: {with_r.exact.mean():.0%}   exact without: {without.exact.mean():.0%}")
        print(f"training {t_train:.0f} s (n={a.n}, iters={a.iters}, lr={a.lr}, {a.method}); test {t_test:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder_of(kb_name), ignore_errors=True)
        if not a.keep:
            try:
                models.unregister(name)
            except Exception:  # noqa: BLE001 - nothing registered when training failed
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
