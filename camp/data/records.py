"""Fine-tuning records: converters between the formats students meet, and a validator that names the file, line
and field of every bad record before any training starts.

Formats (one record each):
  messages  {"messages": [{"role": "system"?, ...}, {"role": "user", "content": …}, {"role": "assistant", …}, …]}
            (OpenAI chat; camp's own format: `load()` always returns it)
  alpaca    {"instruction": …, "input": "" | …, "output": …, "system"?: …}    (single turn)
  xtuner    {"conversation": [{"system"?: …, "input": …, "output": …}, …]}   (XTuner's own dataset format)
  sharegpt  {"conversations": [{"from": "human" | "gpt" | "system", "value": …}, …]}   (read only)

Alpaca's `instruction` and `input` join with a newline into one user message, the way XTuner's
`alpaca_map_fn` joins them, so a set trains on the same text whichever format it is written in.
"""

from __future__ import annotations

import json
import os
import random
import sys
import uuid
from pathlib import Path

from camp.runtime.errors import CampError

FORMATS = ("messages", "alpaca", "xtuner")
READ_FORMATS = (*FORMATS, "sharegpt")
ROLES = ("system", "user", "assistant")
MAX_LISTED = 20  # problems shown in a DataError message; `validate()` and `camp data check` give them all



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
