"""The fixture class of submissions: each is the released sample notebook with the student's cells filled in (and,
for some, cells added, edited or deleted), with the exact auto score it must get (out of 7) and what its result
must say. Built from the release at test time, so they always match the released cells."""

from __future__ import annotations

import copy
import json
from pathlib import Path

COUNT_OK = 'def count_chars(text):\n    return sum(1 for ch in text if not ch.isspace())\n'
COUNT_WRONG = 'def count_chars(text):\n    return len(text)\n'
COUNT_LOOP = 'def count_chars(text):\n    while True:\n        pass\n'
MSG_OK = '''def to_messages(record):
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    prompt = record["instruction"] + ("\\n" + record["input"] if record.get("input") else "")
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
'''
MSG_NO_SYSTEM = '''def to_messages(record):
    prompt = record["instruction"] + ("\\n" + record["input"] if record.get("input") else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
'''
ACC_OK = '''def accuracy(predictions, answers):
    if len(predictions) != len(answers) or not answers:
        raise ValueError("bad lengths")
    return sum(p == a for p, a in zip(predictions, answers)) / len(answers)
'''
ACC_NO_CHECK = '''def accuracy(predictions, answers):
    return sum(p == a for p, a in zip(predictions, answers)) / len(answers)
'''
ANSWER = "并发高时请求合成 batch，算力利用率高，总吞吐上升；每个请求等整个 batch，延迟变长。"


def _extra(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"extra{abs(hash(source)) % 10**8}",
            "metadata": {}, "outputs": [], "source": source}


def build(release_nb: Path, course: Path) -> dict[str, dict]:
    """{student: {"nb": notebook dict, "score": exact auto score, "expect": {task: score}, "says": [...]}}"""
    base = json.loads(release_nb.read_text(encoding="utf-8"))
    classmate = course / "submitted" / "s01_full" / "sample" / "sample.ipynb"

    def make(solutions: dict[str, str], answer: str | None = ANSWER, edit=None) -> dict:
        nb = copy.deepcopy(base)
        for cell in nb["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in solutions:
                cell["source"] = solutions[gid]
            if gid == "answer" and answer:
                cell["source"] = answer
        if edit:
            edit(nb)
        return nb

    def by_id(nb, gid):
        return next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)

    def tamper(nb):
        # rewrite the count_chars test into something that always passes, and delete the hidden-test cell
        nb["cells"][by_id(nb, "count_chars_tests")]["source"] = "assert True  # tests? what tests"
        del nb["cells"][by_id(nb, "to_messages_more")]

    def crash(nb):
        # a cell of its own, after task 1's tests: the kernel kills itself
        nb["cells"].insert(by_id(nb, "to_messages"), _extra("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))

    def fake(nb):
        nb["cells"].insert(by_id(nb, "count_chars"), _extra(
            "get_ipython().showtraceback = lambda *a, **k: None\n"
            "print('All tests passed! 7/7 ✔')\n"))

    peek_code = f'''leaked = []
for p in [{str(classmate)!r}, {str(course / "gradebook.db")!r}, {str(course / "source" / "sample" / "sample.ipynb")!r},
          "../../s01_full/sample/sample.ipynb", "/etc/shadow"]:
    try:
        leaked.append(open(p, "rb").read(20))
    except OSError as exc:
        print("blocked", type(exc).__name__)
print("leaked", leaked)
exec(open({str(classmate)!r}).read())  # borrow the classmate's answer
'''
    escape_code = f'''import os
blocked = []
for p in [{str(course / "gradebook.db")!r}, {str(course / ".camp" / "results" / "sample" / "s07_escape.json")!r},
          "/usr/pwned.txt", {str(classmate)!r}]:
    try:
        with open(p, "w") as f:
            f.write('{{"score": 7}}')
        blocked.append("WROTE " + p)
    except OSError as exc:
        blocked.append(type(exc).__name__)
try:
    with open("big.bin", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
except OSError as exc:
    blocked.append(f"disk full: errno {{exc.errno}}")
os.remove("big.bin")
print("blocked", blocked)
'''

    def escape(nb):
        nb["cells"].insert(by_id(nb, "count_chars"), _extra(escape_code))

    full = {"count_chars": COUNT_OK, "to_messages": MSG_OK, "accuracy": ACC_OK}
    all_tasks = {"count_chars_tests": 2, "to_messages_basic": 1, "to_messages_more": 2, "accuracy_tests": 2}

    def expect(**zeroed):
        return {k: (0 if k in zeroed else v) for k, v in all_tasks.items()}

    return {
        "s01_full": {"nb": make(full), "expect": expect(), "says": []},
        "s02_partial": {"nb": make({**full, "to_messages": MSG_NO_SYSTEM, "accuracy": ACC_NO_CHECK}),
                        "expect": expect(to_messages_more=1, accuracy_tests=1),
                        "says": ["to_messages_more: AssertionError", "accuracy_tests: ZeroDivisionError"]},
        "s03_empty": {"nb": make({}, answer=None), "expect": expect(**all_tasks),
                      "says": ["count_chars_tests: NotImplementedError"]},
        "s04_loop": {"nb": make({**full, "count_chars": COUNT_LOOP}), "expect": expect(count_chars_tests=1),
                     "says": ["count_chars_tests: CellTimeoutError", "interrupted"]},
        "s05_tamper": {"nb": make({**full, "count_chars": COUNT_WRONG, "to_messages": MSG_NO_SYSTEM}, edit=tamper),
                       "expect": expect(count_chars_tests=1, to_messages_more=1),
                       "says": ["`count_chars_tests` was changed", "`to_messages_more` was missing"]},
        "s06_peek": {"nb": make({**full, "count_chars": peek_code}), "expect": expect(count_chars_tests=1),
                     "says": ["count_chars_tests: NameError"], "output": "leaked []"},
        "s07_escape": {"nb": make(full, edit=escape), "expect": expect(), "says": [],
                       "output": "disk full: errno 28"},
        "s08_fake": {"nb": make({"count_chars": "def count_chars(text):\n    return 0\n",
                                 "to_messages": "def to_messages(record):\n    return []\n",
                                 "accuracy": "def accuracy(p, a):\n    return 1.0\n"}, edit=fake),
                     "expect": expect(**all_tasks), "says": ["count_chars_tests: AssertionError"]},
        "s09_crash": {"nb": make(full, edit=crash),
                      "expect": expect(to_messages_basic=1, to_messages_more=1, accuracy_tests=1),
                      "says": ["the kernel died", "to_messages_basic: CellNotRun"]},
    }
