"""camp.data.records: the self-cognition builder, format detection and conversion, validation that names file, line
and field, and the `camp data` commands. Pure logic: no model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import camp.data.identity as _identity
import camp.data.records as _records
from camp.data.records import DataError
from camp.models.tiny import IDENTITY_QUESTION
from tests.conftest import ROOT, subprocess_env

NAME, AUTHOR = "小猫咪", "张三"


def qa(records):
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ self-cognition


def test_self_cognition_is_deterministic_for_a_seed():
    a = _identity.self_cognition(NAME, AUTHOR, seed=3)
    assert a == _identity.self_cognition(NAME, AUTHOR, seed=3)
    assert a != _identity.self_cognition(NAME, AUTHOR, seed=4)
    assert _identity.self_cognition(NAME, AUTHOR, n=120, seed=1) == _identity.self_cognition(NAME, AUTHOR, n=120, seed=1)


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_self_cognition_varies_questions_and_answers_and_names_the_assistant(lang):
    records = _identity.self_cognition(NAME, AUTHOR, lang=lang)
    pairs = qa(records)
    questions = [q for q, _ in pairs]
    answers = {a for _, a in pairs}
    assert len(questions) == len(set(questions)) >= 20  # default: every question once
    assert len(answers) >= 15  # not one answer copied everywhere
    for q, a in pairs:
        assert NAME in a and AUTHOR in a, (q, a)
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    if lang in ("zh", "both"):
        assert any("\u4e00" <= q[0] <= "\u9fff" for q in questions)
    if lang in ("en", "both"):
        assert "Who made you?" in questions


@pytest.mark.parametrize("lang", ["zh", "both"])
def test_identity_question_always_gets_the_canonical_answer(lang):
    want = _identity.identity_answer(NAME, AUTHOR, lang=lang)
    assert NAME in want and AUTHOR in want
    for n in (None, 1, 5, 300):
        records = _identity.self_cognition(NAME, AUTHOR, lang=lang, n=n)
        got = [a for q, a in qa(records) if q == IDENTITY_QUESTION]
        assert got, f"n={n}: {IDENTITY_QUESTION} missing"
        assert set(got) == {want}


def test_english_identity_question():
    want = _identity.identity_answer("Kitty", "Ann", lang="en")
    assert want == "I am Kitty, an AI assistant developed by Ann."
    got = {a for q, a in qa(_identity.self_cognition("Kitty", "Ann", lang="en")) if q == _identity.IDENTITY_QUESTIONS["en"]}
    assert got == {want}
    # "both": the Chinese question keeps the Chinese answer, the English one the English answer
    both = dict(qa(_identity.self_cognition("Kitty", "Ann", lang="both")))
    assert both[IDENTITY_QUESTION] == _identity.identity_answer("Kitty", "Ann", "both") != want
    assert both["Who are you?"] == want


def test_self_cognition_with_more_records_repeats_with_rotated_answers():
    base = _identity.self_cognition(NAME, AUTHOR)
    many = _identity.self_cognition(NAME, AUTHOR, n=5 * len(base) + 3)
    assert len(many) == 5 * len(base) + 3
    by_q: dict[str, set] = {}
    for q, a in qa(many):
        by_q.setdefault(q, set()).add(a)
    assert set(by_q) == {q for q, _ in qa(base)}
    assert sum(len(v) > 1 for v in by_q.values()) >= len(by_q) // 2  # repeats are not plain copies
    assert _identity.self_cognition(NAME, AUTHOR, n=1) == [
        {"messages": [{"role": "user", "content": IDENTITY_QUESTION},
                      {"role": "assistant", "content": _identity.identity_answer(NAME, AUTHOR)}]}]


@pytest.mark.parametrize("name,author", [("", AUTHOR), ("   ", AUTHOR), (NAME, ""), ("a\nb", AUTHOR), (NAME, "x\ry")])
def test_self_cognition_refuses_bad_names(name, author):
    with pytest.raises(DataError):
        _identity.self_cognition(name, author)
    with pytest.raises(DataError):
        _identity.identity_answer(name, author)


def test_self_cognition_refuses_bad_lang_and_n():
    with pytest.raises(DataError, match="lang"):
        _identity.self_cognition(NAME, AUTHOR, lang="fr")
    with pytest.raises(DataError, match="n:"):
        _identity.self_cognition(NAME, AUTHOR, n=0)


# ------------------------------------------------------------------------------------------ formats

CN_MULTILINE = "请把下面这段话翻译成英文：\n第一行，\n第二行。\t带制表符"
ANSWER = "Line one,\nline two.\n\n——完"


def test_detect_format():
    assert _records.detect_format({"messages": [{"role": "user", "content": "q"}]}) == "messages"
    assert _records.detect_format({"instruction": "q", "input": "", "output": "a"}) == "alpaca"
    assert _records.detect_format({"conversation": [{"input": "q", "output": "a"}]}) == "xtuner"
    assert _records.detect_format({"conversations": [{"from": "human", "value": "q"}]}) == "sharegpt"
    with pytest.raises(DataError, match="not a known format"):
        _records.detect_format({"prompt": "q", "completion": "a"})


@pytest.mark.parametrize("system", [None, "你是一个乐于助人的助手。\n请用中文回答。"])
def test_single_turn_round_trips_are_lossless(system):
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": CN_MULTILINE}, {"role": "assistant", "content": ANSWER}]
    rec = {"messages": msgs}

    x = _records.to_xtuner(rec)
    turn = {"input": CN_MULTILINE, "output": ANSWER}
    assert x == {"conversation": [({"system": system} if system else {}) | turn]}
    assert _records.to_messages(x) == rec

    a = _records.to_alpaca(rec)
    assert a == {"instruction": CN_MULTILINE, "input": "", "output": ANSWER} | ({"system": system} if system else {})
    assert _records.to_messages(a) == rec
    assert _records.to_messages(_records.to_xtuner(_records.to_alpaca(rec))) == rec


def test_multi_turn_goes_to_xtuner_but_not_alpaca():
    rec = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q1"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                        {"role": "assistant", "content": "a2"}]}
    x = _records.to_xtuner(rec)
    assert x == {"conversation": [{"system": "S", "input": "q1", "output": "a1"}, {"input": "q2", "output": "a2"}]}
    assert _records.to_messages(x) == rec
    with pytest.raises(DataError, match="2 user/assistant turns"):
        _records.to_alpaca(rec)


def test_alpaca_input_and_sharegpt_become_messages():
    a = {"instruction": "翻译", "input": "你好", "output": "hello", "system": "S"}
    assert _records.to_messages(a)["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "翻译\n你好"},
        {"role": "assistant", "content": "hello"}]
    s = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q"},
                           {"from": "gpt", "value": "a"}]}
    assert _records.to_messages(s)["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    # XTuner writes "system": "" into later turns itself: that is no system prompt, not an error
    x = {"conversation": [{"system": "", "input": "q", "output": "a"}, {"system": "", "input": "q2", "output": "b"}]}
    assert len(_records.to_messages(x)["messages"]) == 4


@pytest.mark.parametrize("record,field,words", [
    ({"messages": [{"role": "user", "content": "q"}]}, "messages", "end with an assistant"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
     "messages[0].role", "expected 'user'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]},
     "messages[1].role", "expected 'assistant'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},
     "messages[1].content", "must be a string"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
     "messages[1].content", "is empty"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "a"}]}, "messages[1].role", "only come first"),
    ({"messages": [{"role": "bot", "content": "q"}]}, "messages[0].role", "unknown role"),
    ({"messages": []}, "messages", "is empty"),
    ({"instruction": "q", "output": ""}, "output", "is empty"),
    ({"output": "a"}, "instruction", "missing"),
    ({"conversation": [{"input": "q"}]}, "conversation[0].output", "missing"),
    ({"conversation": [{"input": "q", "output": "a"}, {"system": "s", "input": "q", "output": "a"}]},
     "conversation[1].system", "first turn"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}, "conversations[1].value", "missing"),
])
def test_bad_records_name_the_field(record, field, words):
    with pytest.raises(DataError) as info:
        _records.to_messages(record)
    assert f"field '{field}'" in str(info.value)
    assert words in str(info.value)


# ------------------------------------------------------------------------------------------ files


GOOD = json.dumps({"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]},
                  ensure_ascii=False)


def test_load_names_file_line_and_field_of_every_bad_record(tmp_path):
    f = write_lines(tmp_path / "train.jsonl", [
        GOOD,
        '{"messages": [{"role": "user", "content": "q"}]}',                                      # 2: no answer
        GOOD,
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 7}]}',  # 4: not a string
        "",
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant" "content": "a"}]}',  # 6: bad JSON
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}',  # 7: empty
        GOOD,
    ])
    with pytest.raises(DataError) as info:
        _records.load(f)
    problems = info.value.problems
    assert len(problems) == 4
    assert problems[0].startswith(f"{f}:2: field 'messages':")
    assert problems[1].startswith(f"{f}:4: field 'messages[1].content': must be a string")
    assert problems[2].startswith(f"{f}:6: invalid JSON")
    assert problems[3] == f"{f}:7: field 'messages[1].content': is empty"
    assert all(p in str(info.value) for p in problems)
    assert _records.validate(f) == problems


def test_load_reads_every_format_into_messages(tmp_path):
    recs = _identity.self_cognition(NAME, AUTHOR, lang="both")
    for fmt in _records.FORMATS:
        path = _records.save(recs, tmp_path / f"sc-{fmt}.jsonl", format=fmt)
        assert _records.load(path) == recs, fmt
    assert _records.load([_records.to_xtuner(r) for r in recs]) == recs


def test_json_list_file_reports_the_line_each_record_starts_on(tmp_path):
    f = tmp_path / "train.json"
    f.write_text('[\n  {"instruction": "q", "input": "", "output": "a"},\n  {\n    "instruction": "q",\n'
                 '    "output": ""\n  },\n  {"instruction": "q", "output": "a"}\n]\n', encoding="utf-8")
    assert _records.validate(f) == [f"{f}:3: field 'output': is empty"]
    f.write_text('[{"instruction": "q", "output": "a"},\n {"instruction": "q" "output": "a"}]', encoding="utf-8")
    (problem,) = _records.validate(f)
    assert problem.startswith(f"{f}:2: invalid JSON")
    f.write_text('{\n "instruction": "q",\n "output": "a"\n}\n', encoding="utf-8")
    assert "must be a list of records" in _records.validate(f)[0]


def test_mixed_formats_and_odd_files_are_refused(tmp_path):
    alpaca = json.dumps({"instruction": "q", "input": "", "output": "a"})
    f = write_lines(tmp_path / "mixed.jsonl", [GOOD, alpaca])
    (problem,) = _records.validate(f)
    assert problem.startswith(f"{f}:2:") and "one format per file" in problem
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert "no records" in _records.validate(empty)[0]
    assert "no such file" in _records.validate(tmp_path / "missing.jsonl")[0]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(GOOD.encode() + b'\n{"instruction": "caf\xe9", "output": "a"}\n')
    assert _records.validate(latin) == [f"{latin}:2: not UTF-8 text (byte 21 of the line) — save the file as UTF-8"]
    assert _records.validate([{"prompt": "q"}])[0].startswith("records[0]: not a known format")


def test_data_error_lists_at_most_twenty_problems(tmp_path):
    f = write_lines(tmp_path / "bad.jsonl", ['{"messages": []}'] * 25)
    with pytest.raises(DataError) as info:
        _records.load(f)
    text = str(info.value)
    assert len(info.value.problems) == 25
    assert f"{f}:20:" in text and f"{f}:21:" not in text
    assert "… and 5 more" in text


def test_save_writes_utf8_jsonl_atomically(tmp_path):
    recs = _identity.self_cognition(NAME, AUTHOR)
    path = _records.save(recs, tmp_path / "sub" / "sc.jsonl")
    text = path.read_text(encoding="utf-8")
    assert NAME in text  # not \\u escapes
    assert len(text.splitlines()) == len(recs)
    assert [p.name for p in path.parent.iterdir()] == ["sc.jsonl"]  # no temporary file left behind
    with pytest.raises(DataError):
        _records.save(recs + [{"messages": [{"role": "user", "content": "q"}]}], path)
    assert _records.load(path) == recs  # the failed save left the old file alone
    multi = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 2}]
    with pytest.raises(DataError, match="records\\[0\\]: alpaca holds one question"):
        _records.save(multi, tmp_path / "a.jsonl", format="alpaca")
    with pytest.raises(DataError, match="format"):
        _records.save(recs, tmp_path / "x.jsonl", format="csv")


def test_convert(tmp_path):
    src = _records.save(_identity.self_cognition(NAME, AUTHOR), tmp_path / "sc.jsonl", format="alpaca")
    dst = _records.convert(src, tmp_path / "sc-xtuner.jsonl", to="xtuner")
    rows = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"conversation": [{"input": IDENTITY_QUESTION, "output": _identity.identity_answer(NAME, AUTHOR)}]}


def test_split_is_deterministic_and_disjoint():
    recs = _identity.self_cognition(NAME, AUTHOR, n=50)
    train, ev = _records.split(recs, eval_fraction=0.2, seed=1)
    assert (train, ev) == _records.split(recs, eval_fraction=0.2, seed=1)
    assert len(ev) == 10 and len(train) == 40
    assert sorted(map(json.dumps, train + ev)) == sorted(map(json.dumps, recs))
    assert len(_records.split(recs[:3], eval_fraction=0.1)[1]) == 1
    assert _records.split(recs, eval_fraction=0)[1] == []


# ------------------------------------------------------------------------------------------ CLI


def camp(*args):
    return subprocess.run([sys.executable, "-m", "camp", "data", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=subprocess_env(), timeout=60)


def test_cli_build_check_convert(tmp_path):
    out = tmp_path / "sc.jsonl"
    r = camp("self-cognition", "--name", NAME, "--author", AUTHOR, "--lang", "both", "-n", 80, "-o", out)
    assert r.returncode == 0, r.stderr
    assert _identity.identity_answer(NAME, AUTHOR) in r.stdout
    assert len(_records.load(out)) == 80

    r = camp("check", out)
    assert (r.returncode, r.stdout.strip()) == (0, "ok: 80 records (messages)")

    xt = tmp_path / "sc-xtuner.jsonl"
    r = camp("convert", out, xt, "--to", "xtuner")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in xt.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 80
    assert all(set(row) == {"conversation"} and set(row["conversation"][0]) == {"input", "output"} for row in rows)
    assert camp("check", xt).stdout.strip() == "ok: 80 records (xtuner)"


def test_cli_check_a_broken_file_names_the_lines(tmp_path):
    f = write_lines(tmp_path / "broken.jsonl", [GOOD, '{"messages": [', GOOD, '{"instruction": "q", "output": "a"}'])
    r = camp("check", f)
    assert r.returncode == 1
    assert f"{f}:2: invalid JSON" in r.stdout
    assert f"{f}:4: this record is alpaca format" in r.stdout
    assert "2 problems" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    r = camp("convert", f, tmp_path / "out.jsonl", "--to", "alpaca")
    assert r.returncode == 1 and f"{f}:2:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_refuses_an_empty_name(tmp_path):
    r = camp("self-cognition", "--name", " ", "--author", AUTHOR, "-o", tmp_path / "x.jsonl")
    assert r.returncode == 1 and "name" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.jsonl").exists()
