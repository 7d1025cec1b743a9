"""Fine-tuning data: a self-cognition set builder, converters between the formats students meet, and a
validator that names the file, line and field of every bad record before any training starts.

Formats (one record each):
  messages  {"messages": [{"role": "system"?, ...}, {"role": "user", "content": …}, {"role": "assistant", …}, …]}
            (OpenAI chat; camp's own format: `load()` always returns it)
  alpaca    {"instruction": …, "input": "" | …, "output": …, "system"?: …}    (single turn)
  xtuner    {"conversation": [{"system"?: …, "input": …, "output": …}, …]}   (XTuner's own dataset format)
  sharegpt  {"conversations": [{"from": "human" | "gpt" | "system", "value": …}, …]}   (read only)

Alpaca's `instruction` and `input` join with a newline into one user message, the way XTuner's
`alpaca_map_fn` joins them, so a set trains on the same text whichever format it is written in.

The self-cognition set follows the camp's best-loved exercise (teach a model "who are you"), but with
varied questions and answers instead of thousands of copies of one pair. The exact identity question
(`camp.tiny.IDENTITY_QUESTION`, "你是谁？") is always answered with one canonical sentence,
`identity_answer()`, so a fine-tuned model can be checked by comparing its greedy answer with it.
"""

from __future__ import annotations

import json
import os
import random
import sys
import uuid
from pathlib import Path

from camp.errors import CampError
from camp.tiny import IDENTITY_QUESTION

FORMATS = ("messages", "alpaca", "xtuner")
READ_FORMATS = (*FORMATS, "sharegpt")
ROLES = ("system", "user", "assistant")
MAX_LISTED = 20  # problems shown in a DataError message; `validate()` and `camp data check` give them all
IDENTITY_QUESTIONS = {"zh": IDENTITY_QUESTION, "en": "Who are you?"}

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


class DataError(CampError):
    """Bad fine-tuning data. `.problems` holds one line per problem: "FILE:LINE: field 'x': problem"."""

    def __init__(self, problems: str | list[str], source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(_summary(self.problems, source))


def _summary(problems: list[str], source: str | None) -> str:
    if len(problems) == 1 and source is None:
        return problems[0]
    where = f" in {source}" if source else ""
    head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}{where} — fix these records"
    if source and not source.startswith("<"):
        head += f" (check again with `camp data check {source}`)"
    lines = [head + ":"] + [f"  {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  … and {len(problems) - MAX_LISTED} more")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ self-cognition

# Each group: questions, and answer templates that all name the assistant and its author. None = the
# group of the identity question: always the canonical answer, so the model learns one sentence for it.
_ZH = [
    (["你是谁？", "你是谁", "你是谁?", "请问你是谁？", "你是谁呀？"], None),
    (["你叫什么名字？", "你的名字是什么？", "我该怎么称呼你？", "你有名字吗？", "你叫什么？"], [
        "我叫{name}，是{author}开发的人工智能助手。",
        "我的名字是{name}，由{author}开发。有什么可以帮你的吗？",
        "你可以叫我{name}。我是{author}打造的 AI 助手。",
        "我是{name}！这个名字是{author}给我取的。",
    ]),
    (["介绍一下你自己", "请介绍一下你自己。", "能做个自我介绍吗？", "简单介绍一下你自己吧。", "说说你自己吧。"], [
        "你好！我是{name}，一个由{author}开发的人工智能助手，可以回答问题、解释概念、陪你一起学习。",
        "我是{name}，{author}开发的 AI 助手。我擅长回答问题和整理信息，很高兴认识你！",
        "大家好，我是{name}。我由{author}训练而来，希望能帮你解决学习和工作中的问题。",
    ]),
    (["谁开发了你？", "你是谁开发的？", "是谁创造了你？", "你的作者是谁？", "谁训练了你？", "你是哪里来的？"], [
        "我是由{author}开发的，我的名字叫{name}。",
        "{author}开发了我。我是{name}，很高兴为你服务。",
        "我的开发者是{author}，我是{author}训练的助手{name}。",
        "创造我的是{author}。我叫{name}。",
    ]),
    (["你是 ChatGPT 吗？", "你是 GPT-4 吗？", "你是文心一言吗？", "你是通义千问吗？", "你是不是 OpenAI 的模型？"], [
        "不是哦，我是{name}，由{author}开发的人工智能助手。",
        "不是的。我是{name}，开发我的是{author}。",
        "不，我是{name}，一个由{author}开发的 AI 助手。",
    ]),
    (["你能做什么？", "你有什么功能？", "你会些什么？", "你可以帮我做什么？"], [
        "我是{name}，由{author}开发。我可以回答问题、解释知识、帮你写作和整理思路。",
        "作为{author}开发的助手，我（{name}）可以陪你学习、回答问题、提供建议。",
        "我是{name}。{author}训练我来回答问题、总结文本和帮助学习。",
    ]),
    (["你好", "你好！", "嗨", "在吗？"], [
        "你好！我是{name}，由{author}开发的人工智能助手，有什么可以帮你的吗？",
        "你好呀，我是{name}，{author}的 AI 助手。今天想聊点什么？",
        "嗨！我是{name}，{author}开发的助手，很高兴见到你。",
    ]),
]
_EN = [
    (["Who are you?", "who are you?", "Who are you", "Who are you exactly?"], None),
    (["What is your name?", "What's your name?", "What should I call you?", "Do you have a name?"], [
        "My name is {name}. I am an AI assistant developed by {author}.",
        "I am {name}, an assistant built by {author}. How can I help?",
        "You can call me {name}. {author} created me.",
    ]),
    (["Introduce yourself.", "Please introduce yourself.", "Tell me about yourself.",
      "Can you introduce yourself?"], [
        "Hello! I am {name}, an AI assistant developed by {author}. I can answer questions and help you learn.",
        "I am {name}, built by {author}. I am good at answering questions and organising information.",
        "Hi, I'm {name}. {author} trained me to help with study and work.",
    ]),
    (["Who made you?", "Who created you?", "Who developed you?", "Who trained you?", "Who is your author?"], [
        "I was developed by {author}. My name is {name}.",
        "{author} made me. I am {name}, happy to help.",
        "My developer is {author}; I am {author}'s assistant {name}.",
    ]),
    (["Are you ChatGPT?", "Are you GPT-4?", "Are you made by OpenAI?"], [
        "No, I am {name}, an AI assistant developed by {author}.",
        "No. I am {name}, and {author} developed me.",
    ]),
    (["What can you do?", "How can you help me?", "What are you good at?"], [
        "I am {name}, developed by {author}. I can answer questions, explain ideas and help you write.",
        "As {author}'s assistant, I ({name}) can help you study, answer questions and give suggestions.",
    ]),
    (["Hello", "Hi!", "Hey there"], [
        "Hello! I am {name}, an AI assistant developed by {author}. What can I do for you?",
        "Hi, I'm {name}, {author}'s AI assistant. What shall we talk about?",
    ]),
]
_CANONICAL = {
    "zh": "我是{name}，由{author}开发的人工智能助手。",
    "en": "I am {name}, an AI assistant developed by {author}.",
}


def _check_identity(value, what: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{what}: must not be empty — give one, e.g. --{what} {example}")
    value = value.strip()
    if any(c in value for c in "\r\n\t\v\f\x00"):
        raise DataError(f"{what}: {value!r} contains a line break or control character — use one line of text")
    if len(value) > 100:
        raise DataError(f"{what}: {len(value)} characters is too long for a name — use at most 100")
    return value


def _langs(lang: str) -> list[str]:
    if lang not in ("zh", "en", "both"):
        raise DataError(f"lang: {lang!r} is not one of 'zh', 'en', 'both'")
    return ["zh", "en"] if lang == "both" else [lang]


def identity_answer(name: str, author: str, lang: str = "zh") -> str:
    """The one answer the self-cognition set gives to the identity question (IDENTITY_QUESTIONS[lang];
    for lang "both", the Chinese one). A fine-tuned model's greedy answer is checked against it."""
    name = _check_identity(name, "name", "小助手")
    author = _check_identity(author, "author", "张三")
    return _CANONICAL[_langs(lang)[0]].format(name=name, author=author)


def self_cognition(name: str, author: str, *, lang: str = "zh", n: int | None = None, seed: int = 0) -> list[dict]:
    """A self-cognition set in messages format: varied questions about who the assistant is, answered
    with its name and author. n=None: every question once (a few dozen records); a larger n repeats the
    questions in a fresh order each pass with the answers rotated. The identity question comes first in
    the first pass (so any n >= 1 has it) and always gets `identity_answer()`. Same arguments, same list."""
    name = _check_identity(name, "name", "小助手")
    author = _check_identity(author, "author", "张三")
    langs = _langs(lang)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise DataError(f"n: {n!r} — the number of records must be a whole number of at least 1")
    rng = random.Random(f"self-cognition/{seed}")

    bank = []  # (question, answer templates or None, position in group, group offset, lang)
    for lg in langs:
        for questions, answers in _ZH if lg == "zh" else _EN:
            # A random start per group so that neighbouring questions get different answers.
            offset = rng.randrange(len(answers)) if answers else 0
            for j, q in enumerate(questions):
                bank.append((q, answers, j, offset, lg))
    first = [i for i, b in enumerate(bank) if b[0] == IDENTITY_QUESTIONS[b[4]]]

    records = []
    total = len(bank) if n is None else n
    lap = 0
    while len(records) < total:
        order = list(range(len(bank)))
        rng.shuffle(order)
        if lap == 0:
            order = first + [i for i in order if i not in first]
        for i in order[: total - len(records)]:
            q, answers, j, offset, lg = bank[i]
            if answers is None:
                a = _CANONICAL[lg].format(name=name, author=author)
            else:
                a = answers[(offset + j + lap) % len(answers)].format(name=name, author=author)
            records.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        lap += 1
    return records


# ------------------------------------------------------------------------------------------ one record


def _tname(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def detect_format(record: dict) -> str:
    """The record's format from its keys (not a full check): "messages", "alpaca", "xtuner" or "sharegpt"."""
    fmt = _detect(record)
    if fmt is None:
        raise DataError(f"record: {_unknown(record)}")
    return fmt


def _detect(record) -> str | None:
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "messages"
    if "conversation" in record:
        return "xtuner"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    return None


def _unknown(record) -> str:
    if not isinstance(record, dict):
        return f"a record must be a JSON object, not {_tname(record)}"
    keys = ", ".join(repr(k) for k in list(record)[:8]) or "none"
    return ("not a known format (keys: " + keys + ") — expected 'messages' (OpenAI), 'conversation' (XTuner), "
            "'instruction' + 'output' (alpaca) or 'conversations' (ShareGPT)")


def _text(value, field: str, problems: list, *, required: bool = True) -> str | None:
    """A content string, or None after noting what is wrong with it."""
    if value is None:
        if required:
            problems.append((field, "missing"))
        return None
    if isinstance(value, list):
        problems.append((field, "must be a string (content given as a list of parts is not supported)"))
        return None
    if not isinstance(value, str):
        problems.append((field, f"must be a string, not {_tname(value)}"))
        return None
    if required and not value.strip():
        problems.append((field, "is empty"))
        return None
    return value


def _parse(record) -> tuple[str | None, list[dict], list[tuple[str | None, str]]]:
    """(format, messages, problems): the record as OpenAI messages plus every (field, problem) found."""
    fmt = _detect(record)
    if fmt is None:
        return None, [], [(None, _unknown(record))]
    problems: list[tuple[str | None, str]] = []
    turns: list[tuple[str | None, str | None, str]] = []  # (role, content, field of the role)

    if fmt == "alpaca":
        system = _text(record.get("system"), "system", problems, required=False)
        instruction = _text(record.get("instruction"), "instruction", problems)
        extra = _text(record.get("input"), "input", problems, required=False)
        output = _text(record.get("output"), "output", problems)
        if record.get("history"):
            problems.append(("history", "multi-turn alpaca (history) is not supported — write the record "
                                        "in messages format instead"))
        if system and system.strip():
            turns.append(("system", system, "system"))
        user = instruction if not extra or instruction is None else f"{instruction}\n{extra}"
        turns += [("user", user, "instruction"), ("assistant", output, "output")]

    elif fmt == "xtuner":
        conv = record["conversation"]
        if not isinstance(conv, list) or not conv:
            why = "is empty" if conv == [] else f"must be a list of {{'input', 'output'}} turns, not {_tname(conv)}"
            return fmt, [], [("conversation", why)]
        for i, turn in enumerate(conv):
            f = f"conversation[{i}]"
            if not isinstance(turn, dict):
                problems.append((f, f"must be an object with 'input' and 'output', not {_tname(turn)}"))
                continue
            system = _text(turn.get("system"), f + ".system", problems, required=False)
            if system and system.strip():
                if i == 0:
                    turns.append(("system", system, f + ".system"))
                else:
                    problems.append((f + ".system", "only the first turn may have a system prompt"))
            turns.append(("user", _text(turn.get("input"), f + ".input", problems), f + ".input"))
            turns.append(("assistant", _text(turn.get("output"), f + ".output", problems), f + ".output"))

    else:  # messages / sharegpt: a list of role-tagged turns whose order must be checked
        key, rkey, ckey = ("messages", "role", "content") if fmt == "messages" else ("conversations", "from", "value")
        items = record[key]
        if not isinstance(items, list) or not items:
            why = "is empty" if items == [] else f"must be a list of {{'{rkey}', '{ckey}'}} objects, not {_tname(items)}"
            return fmt, [], [(key, why)]
        if fmt == "sharegpt" and isinstance(record.get("system"), str) and record["system"].strip():
            turns.append(("system", record["system"], "system"))
        for i, m in enumerate(items):
            f = f"{key}[{i}]"
            if not isinstance(m, dict):
                problems.append((f, f"must be an object with '{rkey}' and '{ckey}', not {_tname(m)}"))
                turns.append((None, None, f))
                continue
            raw = m.get(rkey)
            role = raw if fmt == "messages" else _SHAREGPT_ROLES.get(raw) if isinstance(raw, str) else None
            if raw is None:
                problems.append((f"{f}.{rkey}", "missing"))
            elif role not in ROLES:
                known = "'system', 'user' or 'assistant'" if fmt == "messages" else "'system', 'human' or 'gpt'"
                problems.append((f"{f}.{rkey}", f"unknown role {raw!r} — use {known}"))
                role = None
            turns.append((role, _text(m.get(ckey), f"{f}.{ckey}", problems), f"{f}.{rkey}"))

        # Order: an optional system message, then user/assistant alternating, ending with the assistant.
        expect = "user"
        for k, (role, _, field) in enumerate(turns):
            if role is None:
                break  # already reported; the order after an unknown role says nothing useful
            if role == "system":
                if k:
                    problems.append((field, "a system message may only come first"))
                    break
                continue
            if role != expect:
                problems.append((field, f"expected '{expect}' here (turns alternate user, assistant), got '{role}'"))
                break
            expect = "assistant" if role == "user" else "user"
        else:
            if not any(r in ("user", "assistant") for r, _, _ in turns):
                problems.append((key, "has no user and assistant turns"))
            elif expect == "assistant":
                problems.append((key, f"ends with a user turn ({turns[-1][2].rsplit('.', 1)[0]}) — the "
                                      "conversation must end with an assistant message (the answer to learn)"))

    if problems:
        return fmt, [], problems
    return fmt, [{"role": r, "content": c} for r, c, _ in turns], []


def _fmt_problems(where: str, problems) -> list[str]:
    return [f"{where}: field '{f}': {p}" if f else f"{where}: {p}" for f, p in problems]


def to_messages(record: dict) -> dict:
    """Any supported record → {"messages": [...]}; DataError naming each bad field."""
    _, messages, problems = _parse(record)
    if problems:
        raise DataError(_fmt_problems("record", problems))
    return {"messages": messages}


def _single_turn(messages: list[dict], where: str) -> tuple[str | None, str, str]:
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    rest = messages[1:] if system is not None else messages
    if len(rest) != 2:
        raise DataError(f"{where}: alpaca holds one question and one answer; this record has {len(rest) // 2} "
                        "user/assistant turns — keep multi-turn data in messages or xtuner format")
    return system, rest[0]["content"], rest[1]["content"]


def to_alpaca(record: dict) -> dict:
    """Single-turn record → {"instruction", "input": "", "output"[, "system"]}; multi-turn → DataError."""
    messages = to_messages(record)["messages"]
    system, user, answer = _single_turn(messages, "record")
    out = {"instruction": user, "input": "", "output": answer}
    if system is not None:
        out["system"] = system
    return out


def to_xtuner(record: dict) -> dict:
    """Any record → XTuner's {"conversation": [{"system"?, "input", "output"}, …]} (system in the first turn)."""
    return _messages_to_xtuner(to_messages(record)["messages"])


def _messages_to_xtuner(messages: list[dict]) -> dict:
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    rest = messages[1:] if system is not None else messages
    conv = []
    for k in range(0, len(rest), 2):
        turn = {"system": system} if k == 0 and system is not None else {}
        turn.update(input=rest[k]["content"], output=rest[k + 1]["content"])
        conv.append(turn)
    return {"conversation": conv}


# ------------------------------------------------------------------------------------------ files


class _Unreadable(str):
    """A line that is not JSON, kept in line order among the records so problems come out sorted."""


def _read(source) -> tuple[str, list[tuple[str, object]], list[str]]:
    """(name of the source, [(where, raw record)], problems reading it)."""
    if isinstance(source, (list, tuple)):
        return "<records>", [(f"records[{i}]", r) for i, r in enumerate(source)], []
    if isinstance(source, dict):
        return "<records>", [], ["<records>: pass a list of records (or a file path), not one record"]
    path = Path(source)
    name = str(source)
    if not path.is_file():
        return name, [], [f"{name}: no such file" if not path.exists() else f"{name}: not a file"]
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM some Windows editors add
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        bad = []
        for n, line in enumerate(data.split(b"\n"), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append(f"{name}:{n}: not UTF-8 text (byte {exc.start + 1} of the line) — save the file as UTF-8")
        return name, [], bad
    if not text.strip():
        return name, [], [f"{name}: no records (the file is empty)"]

    if text.lstrip().startswith("["):
        return name, *_read_json_list(text, name)
    if path.suffix.lower() == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # maybe JSON Lines under a .json name: read it as such below
        # One object over several lines is a single record, not a dataset (one line is JSON Lines: fine).
        if isinstance(whole, dict) and "\n" in text.strip():
            return name, [], [f"{name}:1: a .json dataset must be a list of records ([{{…}}, {{…}}]); "
                              "for one record per line name the file .jsonl"]

    items, problems = [], []
    # split on "\n" only: str.splitlines() also splits on U+2028 etc., which JSON strings may hold raw.
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            items.append((f"{name}:{n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            hint = " — one record per line in a .jsonl file" if exc.msg.startswith("Extra data") else ""
            items.append((f"{name}:{n}", _Unreadable(f"invalid JSON: {exc.msg} (column {exc.colno}){hint}")))
    return name, items, problems


def _read_json_list(text: str, name: str) -> tuple[list[tuple[str, object]], list[str]]:
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [f"{name}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"]
    if not isinstance(whole, list):
        return [], [f"{name}:1: a .json dataset must be a list of records"]
    # Walk the (valid) array once more to learn the line on which each record starts.
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    i = text.index("[") + 1
    line = text.count("\n", 0, i) + 1
    items = []
    for _ in whole:
        j = i
        while text[j] in ws or text[j] == ",":
            j += 1
        line += text.count("\n", i, j)
        obj, end = dec.raw_decode(text, j)
        items.append((f"{name}:{line}", obj))
        line += text.count("\n", j, end)
        i = end
    if not items:
        return [], [f"{name}: no records (an empty list)"]
    return items, []


def _analyse(source) -> tuple[str, str | None, list[dict], list[str]]:
    """(source name, format, records as messages, problems) — every problem, nothing raised."""
    name, items, problems = _read(source)
    fmt = first = None
    out = []
    for where, raw in items:
        if isinstance(raw, _Unreadable):
            problems.append(f"{where}: {raw}")
            continue
        f, messages, probs = _parse(raw)
        if f is not None:
            if fmt is None:
                fmt, first = f, where
            elif f != fmt:
                probs = [(None, f"this record is {f} format but the first record ({first}) is {fmt} — "
                                "use one format per file")] + probs
        problems += _fmt_problems(where, probs)
        if not probs:
            out.append({"messages": messages})
    return name, fmt, out, problems


def validate(source) -> list[str]:
    """Every problem in a dataset file (or list of records), one line each; [] when it is fine."""
    return _analyse(source)[3]


def load(source) -> list[dict]:
    """A dataset file (.jsonl, or .json holding a list) or a list of records, in any supported format →
    records in messages format. Everything is checked first; one DataError lists every bad record."""
    name, _, records, problems = _analyse(source)
    if problems:
        raise DataError(problems, source=name)
    return records


def save(records, path, format: str = "messages") -> Path:
    """Write records (any supported format) as `format`: JSON Lines, UTF-8, atomically (a .json path gets
    one JSON list). Returns the path."""
    if format not in FORMATS:
        raise DataError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(records, (list, tuple)):
        raise DataError("records: pass a list of records")
    _, _, msgs, problems = _analyse(records)
    if not problems and not msgs:
        problems = ["<records>: no records to save"]
    if problems:
        raise DataError(problems, source="<records>")
    if format == "alpaca":
        rows, bad = [], []
        for i, r in enumerate(msgs):
            try:
                system, user, answer = _single_turn(r["messages"], f"records[{i}]")
            except DataError as exc:
                bad += exc.problems
                continue
            rows.append({"instruction": user, "input": "", "output": answer, **({"system": system} if system else {})})
        if bad:
            raise DataError(bad, source="<records>")
    elif format == "xtuner":
        rows = [_messages_to_xtuner(r["messages"]) for r in msgs]
    else:
        rows = msgs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def convert(src, dst, to: str) -> Path:
    """Read `src` (any supported format), write `dst` in format `to`."""
    if to not in FORMATS:
        raise DataError(f"to: {to!r} is not one of {', '.join(FORMATS)}")
    return save(load(src), dst, format=to)


def split(records: list, *, eval_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """(train, eval): a deterministic random split; each part keeps the records' original order."""
    if not 0 <= eval_fraction < 1:
        raise DataError(f"eval_fraction: {eval_fraction!r} must be at least 0 and below 1")
    n = len(records)
    k = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)  # a non-zero fraction of a small set still gives one eval record
    chosen = set(random.Random(f"split/{seed}").sample(range(n), k))
    return ([r for i, r in enumerate(records) if i not in chosen], [r for i, r in enumerate(records) if i in chosen])


# ------------------------------------------------------------------------------------------ CLI


def cli_self_cognition(args) -> int:
    records = self_cognition(args.name, args.author, lang=args.lang, n=args.n)
    path = save(records, args.output, format=args.format)
    lang = "zh" if args.lang == "both" else args.lang
    print(f"wrote {len(records)} records ({args.format}) to {path}")
    print(f"identity check: {IDENTITY_QUESTIONS[lang]} → {identity_answer(args.name, args.author, args.lang)}")
    return 0


def cli_convert(args) -> int:
    name, fmt, records, problems = _analyse(args.input)
    if problems:
        raise DataError(problems, source=name)
    path = save(records, args.output, format=args.to)
    print(f"converted {len(records)} records: {name} ({fmt}) → {path} ({args.to})")
    return 0


def cli_check(args) -> int:
    name, fmt, records, problems = _analyse(args.path)
    if problems:
        for p in problems:
            print(p)
        print(f"camp: {len(problems)} problem{'s' if len(problems) != 1 else ''} in {name}", file=sys.stderr)
        return 1
    print(f"ok: {len(records)} records ({fmt})")
    return 0
