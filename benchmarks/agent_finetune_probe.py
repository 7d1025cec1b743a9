"""Probe: can the tiny model learn to call the calculator the ReAct way? Fine-tune, then greedy-test held-out questions.

    python benchmarks/agent_finetune_probe.py [--n 4000] [--iters 1200] [--lr 3e-3] [--method full|lora|auto]
                                              [--full-prompt] [--lang zh|en|both] [--heldout 40] [--model tiny]

Defaults: notebook 05's settings on cpu-tiny (camp.agent_data.LESSON["cpu"]). Measured (2 cores,
OMP_NUM_THREADS=1) on the tiny model of camp.tiny RECIPE_VERSION 2 (copy pre-training): call 100 %, answer 100 %,
e2e 100 % of 40 held-out questions, training 96 s (+ convert/merge ~20 s). For comparison:
  - tiny without copy pre-training (RECIPE_VERSION 1): 0-5 % e2e at these settings; the digits were copied only
    after ~18 000 traces seen (full fine-tuning, lr 1e-3, 4500 iterations × batch 4: 95 % e2e, 434 s);
  - copy pre-training, 400 iterations at lr 1e-3: 0 % e2e (format right, operands and operators wrong);
    800 at lr 3e-3: 70 %; 1200 at lr 3e-3: 80 % (20 questions) on an earlier build, 100 % (40) on the final one.

Trains with camp.finetune on camp.agent_data.react_traces(n) (the Response sent as a user message, as camp.agent
sends it), then asks the merged model, with no agent and no server (transformers, greedy, the tokenizer's chat
template — what `transformers serve` does), for each held-out question:
  call     turn 1: does the reply parse (as Lagent parses it) to Action Calculator with the question's expression?
  answer   turn 2 given the expected turn 1 and the tool's Response: is the result in the Final Answer?
  answer(system)  the same with the Response sent as a system message (Lagent's unmodified layout)
  e2e      turn 1 from the model, its expression evaluated by camp.agents.safe_eval, turn 2 from the model: right
           tool, and the tool's (correct) result in the Final Answer — what the agent would do.
Prints the accuracies, a few replies, and the wall times of training and of the test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def greedy(model, tok, messages, max_new_tokens=64) -> str:
    import torch

    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id])
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def evaluate(model_dir, test, *, show: int = 3) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from camp.agents import traces as D
    from camp.agents.react import format_number, safe_eval

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    n = {"call": 0, "answer": 0, "answer(system)": 0, "e2e": 0}
    for i, rec in enumerate(test):
        msgs = rec["messages"]
        r1 = greedy(model, tok, msgs[:2])
        r2 = greedy(model, tok, msgs[:4])
        sys_layout = msgs[:3] + [dict(msgs[3], role="system")]
        r2s = greedy(model, tok, sys_layout)
        n["call"] += D.check_call(r1, rec)
        n["answer"] += D.check_answer(r2, rec)
        n["answer(system)"] += D.check_answer(r2s, rec)
        # end to end: the model's own call, the real tool
        _, action, arg = D.parse_reply(r1)
        expr = D.expression_of(arg)
        e2e = False
        if action == D.TOOL_NAME and expr is not None:
            try:
                value = format_number(safe_eval(expr))
            except ValueError as exc:
                value = f"error: {exc}"
            r2e = greedy(model, tok, msgs[:2] + [{"role": "assistant", "content": r1},
                                                  {"role": "user", "content": f"{D.RESPONSE}{value}\n"}])
            e2e = value == rec["meta"]["result"] and D.check_answer(r2e, rec)
        n["e2e"] += e2e
        if i < show:
            print(f"  Q: {rec['meta']['question']}\n  turn1: {r1!r}\n  turn2: {r2!r}\n  turn2(system): {r2s!r}")
    return {k: v / len(test) for k, v in n.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    from camp.agents.traces import LESSON

    ap.add_argument("--n", type=int, default=LESSON["cpu"]["traces"], help="training traces")
    ap.add_argument("--iters", type=int, default=LESSON["cpu"]["max_iters"])
    ap.add_argument("--lr", type=float, default=LESSON["cpu"]["lr"])
    ap.add_argument("--method", default=LESSON["cpu"]["method"])
    ap.add_argument("--full-prompt", dest="short", action="store_false",
                    help="Lagent's own system prompt (~500 tokens) instead of the short one (~160)")
    ap.add_argument("--lang", default="both")
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=None,
                    help="default: camp's plan (the longest trace + 10%%, counted with the model's tokenizer)")
    ap.add_argument("--eval-only", default=None, help="a model folder: skip training")
    ap.add_argument("--keep", action="store_true", help="keep the run folder and the registered model")
    args = ap.parse_args(argv)

    from camp import models, training
    from camp.agents import traces as D

    name = f"agent-probe-{os.getpid()}"
    test = D.heldout(args.heldout, lang=args.lang, short_system=args.short)
    if args.eval_only:
        model_dir, t_train = Path(args.eval_only), 0.0
    else:
        train = D.for_training(D.react_traces(args.n, lang=args.lang, short_system=args.short))
        run_dir = Path(tempfile.mkdtemp(prefix="camp-agent-probe-")) / "run"
        t = time.perf_counter()
        r = training.finetune(args.model, train, run_dir=run_dir, max_iters=args.iters, lr=args.lr,
                              method=args.method, max_length=args.max_length, show=False, name=name,
                              evaluation_inputs=[test[0]["meta"]["question"]])
        t_train = time.perf_counter() - t
        model_dir = r.merged_dir
        print(f"trained: {r.plan.headline()}  max_length {r.plan.max_length}  iters {r.max_iters}  "
              f"seconds {r.seconds}  last losses {r.losses[-3:]}\n  merged: {model_dir}")
    t = time.perf_counter()
    acc = evaluate(model_dir, test)
    t_eval = time.perf_counter() - t
    if not args.eval_only and not args.keep:
        models.unregister(name)
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    print(f"RESULT n={args.n} iters={args.iters} lr={args.lr} method={args.method} short={args.short} "
          f"lang={args.lang} heldout={len(test)}: " + "  ".join(f"{k} {v:.0%}" for k, v in acc.items())
          + f"  | train {t_train:.0f} s, test {t_eval:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
