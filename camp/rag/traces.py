"""RAG traces: (retrieved passages, question → the answer copied from a passage), to teach a small model to use
its context — as camp.agents.traces teaches it the ReAct format.

    train = camp.rag.traces.rag_traces(3000)                      # OpenAI-messages records for camp.finetune
    doc = camp.rag.traces.heldout_document(folder)                # fact cards about entities no trace mentions
    kb = camp.rag.build(doc.parent, name="heldout"); camp.rag.traces.answer_table(kb, endpoint, doc_questions)

The tiny model cannot know a fact from a document it never saw; a model that learned to read its context can still
answer from the passage retrieval puts in front of it. The traces are made of **fact cards** — short passages like

    ## 星河-37
    星河-37 的服务端口是 28417。星河-37 的负责人是林秋。星河-37 需要 24 GB 显存。

with random values (a port, a version, a ticket number …) that no model can guess, mixed with other cards and with
real passages of the course documents as distractors, in the very prompt `kb.ask` sends (camp.rag.kb.prompt_messages).
The answer is the value, copied exactly. Entity names belong to the held-out split by a fixed hash of the name
(whatever the seed), so a held-out card's entity is in no training trace: answering it means reading the passage.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from camp.rag import chunking, documents
from camp.rag.kb import prompt_messages
from camp.runtime.errors import CampError

HELDOUT_PERCENT = 15
CARD_SIZE = 200  # chunk size for card documents: one card is one passage

_PREFIX_ZH = ["星河", "青松", "远航", "墨竹", "云帆", "飞鸿", "晨曦", "北辰", "流萤", "玄武", "朱雀", "白鹭", "金桂",
              "银杏", "海棠", "紫薇", "长风", "明月", "清泉", "春雷"]
_PREFIX_EN = ["Orion", "Falcon", "Aurora", "Cedar", "Nimbus", "Vega", "Lynx", "Atlas", "Comet", "Willow", "Maple",
              "Quartz", "Harbor", "Summit", "Ember", "Delta", "Nova", "Pioneer", "Zephyr", "Beacon"]


def _port(r, lang):
    return str(r.randint(10000, 65000))


def _version(r, lang):
    return f"v{r.randint(1, 9)}.{r.randint(0, 19)}.{r.randint(0, 9)}"


def _memory(r, lang):
    return f"{r.randint(2, 96)} GB"


def _code(r, lang):
    return f"{r.randint(100, 999)}-{r.randint(1000, 9999)}"


def _year(r, lang):
    return str(r.randint(2025, 2069))


# attribute: (value maker, {lang: (passage sentence, [question templates])})
ATTRIBUTES = {
    "port": (_port, {"zh": ("{e} 的服务端口是 {v}。", ["{e} 的服务端口是多少？", "{e} 用哪个端口？"]),
                     "en": ("{e} listens on port {v}.", ["Which port does {e} listen on?",
                                                         "What is the port of {e}?"])}),
    "version": (_version, {"zh": ("{e} 的最新版本是 {v}。", ["{e} 的最新版本是什么？", "{e} 最新是哪个版本？"]),
                           "en": ("The latest version of {e} is {v}.", ["What is the latest version of {e}?",
                                                                        "Which version of {e} is the latest?"])}),
    "memory": (_memory, {"zh": ("{e} 需要 {v} 显存。", ["{e} 需要多少显存？", "运行 {e} 要多少显存？"]),
                         "en": ("{e} needs {v} of GPU memory.", ["How much GPU memory does {e} need?",
                                                                 "What GPU memory does {e} require?"])}),
    "code": (_code, {"zh": ("{e} 的工单编号是 {v}。", ["{e} 的工单编号是什么？", "{e} 的工单号是多少？"]),
                     "en": ("The ticket number of {e} is {v}.", ["What is the ticket number of {e}?",
                                                                 "Which ticket number does {e} have?"])}),
    "year": (_year, {"zh": ("{e} 计划在 {v} 年上线。", ["{e} 计划哪一年上线？", "{e} 哪年上线？"]),
                     "en": ("{e} goes live in {v}.", ["In which year does {e} go live?",
                                                      "When does {e} go live?"])}),
}


def is_heldout(entity: str) -> bool:
    """Whether an entity name belongs to the held-out split (a fixed hash of the name)."""
    h = hashlib.sha256(f"camp-rag|{entity}".encode()).digest()
    return int.from_bytes(h[:4], "big") % 100 < HELDOUT_PERCENT


def _entity(r: random.Random, lang: str) -> str:
    if lang == "zh":
        return f"{r.choice(_PREFIX_ZH)}-{r.randint(10, 999)}"
    return f"{r.choice(_PREFIX_EN)}-{r.randint(10, 999)}"


def card(r: random.Random, lang: str, split: str, *, n_facts: int | None = None, entity: str | None = None) -> dict:
    """One fact card: {"entity", "lang", "facts": {attribute: value}, "text": markdown}."""
    want = split == "heldout"
    for _ in range(10_000):
        e = entity or _entity(r, lang)
        if entity or is_heldout(e) == want:
            break
    else:  # pragma: no cover - the hash splits names about 15/85
        raise CampError("could not draw an entity name for the split")
    attrs = r.sample(sorted(ATTRIBUTES), n_facts or r.randint(2, 4))
    facts = {a: ATTRIBUTES[a][0](r, lang) for a in attrs}
    body = "".join(ATTRIBUTES[a][1][lang][0].format(e=e, v=v) + ("" if lang == "zh" else " ")
                   for a, v in facts.items()).strip()
    return {"entity": e, "lang": lang, "facts": facts, "text": f"## {e}\n{body}\n"}


def card_passage(c: dict) -> str:
    """The passage the chunker makes of a card (heading line + body), as retrieval returns it."""
    chunks = list(chunking.chunk_lines((documents.Line(x, i) for i, x in enumerate(c["text"].splitlines(), 1)),
                                       source="cards.md", size=CARD_SIZE))
    return chunks[0].text


_course_cache: list[str] | None = None


def course_passages() -> list[str]:
    """The course documents' passages (assets/corpus, chunked at CARD_SIZE): distractors in the traces."""
    global _course_cache
    if _course_cache is None:
        from camp.runtime import config

        out = []
        for f in sorted((config.assets_dir() / "corpus").glob("*.md")):
            out += [c.text for c in chunking.chunk_lines(documents.lines(f), source=f.name, size=CARD_SIZE)]
        _course_cache = out
    return list(_course_cache)


def question_for(r: random.Random, c: dict, attribute: str, lang: str | None = None) -> str:
    lang = lang or c["lang"]
    return r.choice(ATTRIBUTES[attribute][1][lang][1]).format(e=c["entity"])


def rag_traces(n: int, *, seed: int = 0, split: str = "train", k: int = 3, lang: str = "both",
               course_distractors: float = 0.5) -> list[dict]:
    """n records {"messages": [system, user (passages + question), assistant (the value)], "meta": {...}}.

    k passages per prompt: the card holding the answer, at a random position, and k-1 distractors (other cards,
    and with probability `course_distractors` one course passage). lang: "zh", "en" or "both" (alternating)."""
    if split not in ("train", "heldout"):
        raise CampError(f"split must be 'train' or 'heldout', not {split!r}")
    if lang not in ("zh", "en", "both"):
        raise CampError(f"lang must be 'zh', 'en' or 'both', not {lang!r}")
    if not 1 <= k <= 8:
        raise CampError(f"k must be 1 to 8, not {k}")
    if n < 0:
        raise CampError(f"n must be 0 or more, not {n}")
    r = random.Random(f"camp-rag-{seed}-{split}")
    langs = ["zh", "en"] if lang == "both" else [lang]
    course = course_passages()
    out = []
    for i in range(n):
        lg = langs[i % len(langs)]
        gold = card(r, lg, split)
        attribute = r.choice(sorted(gold["facts"]))
        passages = [card_passage(gold)]
        n_course = 1 if (k > 1 and r.random() < course_distractors) else 0
        for _ in range(k - 1 - n_course):
            other = card(r, r.choice(langs), split)
            if other["entity"] == gold["entity"]:
                other = card(r, other["lang"], split)
            passages.append(card_passage(other))
        passages += r.sample(course, n_course)
        order = list(range(len(passages)))
        r.shuffle(order)
        shuffled = [passages[j] for j in order]
        question = question_for(r, gold, attribute, lg)
        answer = gold["facts"][attribute]
        msgs = prompt_messages(question, shuffled)
        out.append({"messages": [*msgs, {"role": "assistant", "content": answer}],
                    "meta": {"entity": gold["entity"], "attribute": attribute, "answer": answer, "question": question,
                             "lang": lg, "gold": order.index(0), "passages": shuffled}})
    return out


def for_training(records: list[dict]) -> list[dict]:
    """The records as camp.finetune takes them (messages only)."""
    return [{"messages": [dict(m) for m in r["messages"]]} for r in records]


def heldout_cards(n: int = 12, *, seed: int = 0, lang: str = "both") -> list[dict]:
    """n held-out fact cards (entities no training trace mentions), with all their facts."""
    r = random.Random(f"camp-rag-doc-{seed}")
    langs = ["zh", "en"] if lang == "both" else [lang]
    seen, out = set(), []
    while len(out) < n:
        c = card(r, langs[len(out) % len(langs)], "heldout", n_facts=r.randint(3, 4))
        if c["entity"] not in seen:
            seen.add(c["entity"])
            out.append(c)
    return out


def write_document(cards: list[dict], path, title: str = "新项目手册 / New projects handbook") -> Path:
    """Write cards as one Markdown document (what a student's own notes would look like)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n" + "\n".join(c["text"] for c in cards), encoding="utf-8")
    return path


def questions(cards: list[dict], *, seed: int = 0, per_card: int = 2) -> list[dict]:
    """Questions about the cards: {"question", "answer", "entity", "attribute", "lang"} (per_card each)."""
    r = random.Random(f"camp-rag-q-{seed}")
    out = []
    for c in cards:
        for attribute in r.sample(sorted(c["facts"]), min(per_card, len(c["facts"]))):
            out.append({"question": question_for(r, c, attribute), "answer": c["facts"][attribute],
                        "entity": c["entity"], "attribute": attribute, "lang": c["lang"]})
    return out


def exact(reply: str, answer: str) -> bool:
    """The reply is the answer (whitespace and a final full stop aside)."""
    norm = reply.strip().rstrip("。.").strip()
    return norm == answer


def answer_table(qs: list[dict], ask, *, retrieve=None, k: int = 3):
    """Ask each question; a DataFrame with the reply, whether it is exact, and (with `retrieve`) whether the right
    card was among the passages. `ask(messages) -> reply`; `retrieve(question, k) -> Hits` (None: no retrieval)."""
    import pandas as pd

    from camp.rag.kb import plain_messages

    rows = []
    for q in qs:
        if retrieve is None:
            msgs, found = plain_messages(q["question"]), None
        else:
            hits = retrieve(q["question"], k)
            msgs = prompt_messages(q["question"], hits)
            found = any(q["answer"] in h.text and q["entity"] in h.text for h in hits)
        reply = ask(msgs)
        rows.append({"question": q["question"], "expected": q["answer"], "reply": reply,
                     "exact": exact(reply, q["answer"]), "retrieved": found})
    return pd.DataFrame(rows)


def lesson_settings(profile=None) -> dict:
    """What lesson 08 trains, per device (see LESSON)."""
    from camp.runtime import hardware

    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    return dict(LESSON["cuda" if prof.device == "cuda" else "cpu"])


# What lesson 08 trains, per device. cpu: measured on the tiny model (2 cores under heavy load, full fine-tuning
# with XTuner, batch 4): 4000 one-passage traces, 2000 iterations at lr 2e-3 → 96 % and 88 % exact on the
# questions of two held-out handbooks (24 each, the hybrid retriever's top passage), 0 % without retrieval. Earlier
# tries, for the record: k=3 passages, 800 iterations → 0 % (the format, never the value); plain-torch probes at
# k=1 plateaued at ~54 % with Chinese names and cities as values and ~71 % with letter codes: values the tiny
# tokenizer spells as digits copy best, hence the attributes above. cuda: a starting point (LoRA, k=3), not measured.
LESSON = {
    "cpu": {"traces": 4000, "method": "full", "lr": 2e-3, "max_iters": 2000, "k": 1},
    "cuda": {"traces": 1000, "method": "auto", "lr": 2e-4, "max_iters": 300, "k": 3},
}


TRACES_VERSION = 1  # bump when rag_traces() changes what it generates


def lesson_run_dir(model="auto", settings: dict | None = None, profile=None) -> Path:
    """The run folder of the lesson's RAG fine-tune of `model` with `settings`: named by a hash of the base model
    (its folder and completion marker: a rebuilt tiny model gets a new folder), the settings and the traces' version.
    camp.finetune returns a finished run found there without training again — lesson 08 and its test share it."""
    from camp.models import hub
    from camp.runtime import config

    settings = settings or lesson_settings(profile)
    base = Path(hub.resolve(model, profile=profile)).resolve()
    marker = base / ".camp-complete"
    ident = json.dumps({"base": str(base), "marker": marker.read_text() if marker.exists() else "",
                        "settings": settings, "traces": TRACES_VERSION}, sort_keys=True)
    return config.runs_dir() / f"rag-lesson-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def dump(records: list[dict], path) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
