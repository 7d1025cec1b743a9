"""ReAct traces for agent fine-tuning: arithmetic questions answered by calling the calculator tool.

    train = camp.agent_data.react_traces(600)                    # OpenAI-messages records for camp.finetune
    test = camp.agent_data.react_traces(20, split="heldout")     # questions never in any training split
    r = camp.finetune("tiny", for_training(train), name="tiny-agent", **settings)  # see LESSON below
    camp.agent_data.solve(camp.agent(camp.serve("tiny-agent"), [camp.agents.calculator()], prompt="short"), test)

Each record is one whole agent run, laid out as Lagent 0.2.4's `ReAct` agent (ReActProtocol + GPTAPI) sends it
to the chat API, so what the model learns is exactly what it is asked at serving time:

    system     the ReAct call protocol with the tool list (`lagent_system_prompt()`, or a shorter `system=`)
    user       计算 37 乘以 48 等于多少？
    assistant  Thought:这道题需要计算，调用计算器。\\nAction:Calculator\\nAction Input:{"expression": "37 * 48"}
    user       Response:1776\\n                      ← the tool's result (Lagent: role "system", see below)
    assistant  Thought:计算器给出了结果。\\nFinal Answer:1776

Lagent's ReActProtocol parses the first reply into (thought, "Calculator", '{"expression": "37 * 48"}') — the
key words are `Thought:`, `Action:`, `Action Input:`, `Response:`, `Final Answer:`, no space after the colon,
and `Action:` must end its line — and returns the second reply's text after `Final Answer:` as the answer.

The tool's Response: Lagent's `ReActProtocol.format_response` sends it as a **system** message in the middle of
the conversation. camp's data formats (and XTuner's conversation format, which renders a mid-conversation system
prompt as a system block followed by an empty user turn) have no such message, so the default here is
`response_role="user"`, and camp.agent sends the Response as a user message too (its default), so serving
matches training; `camp.agent(..., prompt="short")` sends SHORT_PROTOCOL's system message.
`response_role="system"` gives Lagent's own layout, for comparison and for evaluating an agent that keeps it;
camp.finetune cannot train those records.

Held-out questions: a triple (a, op, b) belongs to the held-out split by a fixed hash of its own, whatever
the seed or n, so no held-out question (in either language, with any template) is ever in a training split.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from camp.runtime.errors import CampError

TOOL_NAME = "Calculator"  # the class name camp.agents.calculator() gives its Lagent action
PARAM = "expression"  # the calculator's one argument
HELDOUT_PERCENT = 10  # share of all (a, op, b) triples kept out of training

# Lagent 0.2.4 ReActProtocol key words (its `begin` strings).
THOUGHT, ACTION, ACTION_INPUT, RESPONSE, FINISH = "Thought:", "Action:", "Action Input:", "Response:", "Final Answer:"

# The description Lagent builds (ActionExecutor.get_actions_info) for camp.agents.calculator(): name, the tool
# method's docstring summary, its typed argument, and Lagent's JSON parser's parameter_description.
CALCULATOR_INFO = {
    "name": TOOL_NAME,
    "description": "Evaluate an arithmetic expression with numbers and + - * / // % ** and parentheses.",
    "parameters": [{"name": PARAM, "type": "STRING", "description": "the expression, e.g. (3 + 4) * 12"}],
    "required": [PARAM],
    "parameter_description": "If you call this tool, you must pass arguments in the JSON format {key: value}, "
                             "where the key is the parameter name.",
}

# Lagent 0.2.4's English ReAct call protocol (ReActProtocol's default `call_protocol`), with its typos kept:
# the model must see the very text the agent sends.
_CALL_PROTOCOL_EN = (
    "You are a assistant who can utilize external tools.\n"
    "{tool_description}\n"
    "To use a tool, please use the following format:\n"
    "```\n"
    "{thought}Think what you need to solve, do you need to use tools?\n"
    "{action}the tool name, should be one of [{action_names}]\n"
    "{action_input}the input to the action\n"
    "```\n"
    "The response after utilizing tools should using the following format:\n"
    "```\n"
    "{response}the results after call the tool.\n"
    "```\n"
    "If you already know the answer, or you do not need to use tools,\n"
    "please using the following format to reply:\n"
    "```\n"
    "{thought}the thought process to get the final answer\n"
    "{finish}final answer\n"
    "```\n"
    "Begin!"
)

# A short call protocol for small models: the same key words, a fraction of the tokens. An agent built with
# camp.agents must then send exactly this as its system message (ReActProtocol(call_protocol=SHORT_PROTOCOL)).
SHORT_PROTOCOL = (
    "You can use the tool {action_names}: {tool_summary}\n"
    "To use it reply:\n{thought}...\n{action}tool name\n{action_input}JSON arguments\n"
    "Tool results come as {response}...\n"
    "To answer reply:\n{thought}...\n{finish}answer"
)

_OPS = {"+": ("加", "plus", lambda a, b: a + b),
        "-": ("减", "minus", lambda a, b: a - b),
        "*": ("乘以", "times", lambda a, b: a * b)}

_TEMPLATES = {
    "zh": ["计算 {a} {w} {b} 等于多少？", "{a} {w} {b} 是多少？", "请帮我算一下 {a} {w} {b}。", "{a}{s}{b} 等于几？"],
    "en": ["What is {a} {w} {b}?", "Calculate {a} {w} {b}.", "Please compute {a} {s} {b}.", "How much is {a} {w} {b}?"],
}
_SYMBOL = {"+": "+", "-": "-", "*": "×"}

_REPLIES = {
    "zh": ("这道题需要计算，调用计算器。", "计算器给出了结果。"),
    "en": ("I need the calculator for this.", "The calculator gave the result."),
}


# ---------------------------------------------------------------------------------------- the prompt
def lagent_system_prompt(tools: list[dict] | None = None, *, short: bool = False) -> str:
    """The system message Lagent's ReActProtocol.format sends for `tools` (Lagent's action descriptions,
    default: camp's calculator). short=True: SHORT_PROTOCOL instead of Lagent's default protocol."""
    tools = [CALCULATOR_INFO] if tools is None else list(tools)
    names = [t["name"] for t in tools]
    fields = dict(thought=THOUGHT, action=ACTION, action_input=ACTION_INPUT, response=RESPONSE, finish=FINISH)
    if short:
        summary = "; ".join(f"{t['name']}: {t['description']}" for t in tools)
        # str(list): the same rendering of the names as Lagent's (`[['Calculator']]` in its own protocol)
        return SHORT_PROTOCOL.format(action_names=str(names), tool_summary=summary, **fields)
    # Lagent formats the description list with str.format, i.e. Python's repr of the list of dicts
    return _CALL_PROTOCOL_EN.format(tool_description=tools, action_names=names, **fields)


# ---------------------------------------------------------------------------------------- parsing
def parse_reply(text: str) -> tuple[str, str | None, str]:
    """(thought, action, argument) of one model reply, read the way Lagent's ReActProtocol.parse reads it:
    action "FinishAction" with the final answer when `Final Answer:` occurs; "NoAction" when no `Action:` line
    ending in a newline or no `Action Input:` follows; else the last action name and its stripped input."""
    thought = text.split(ACTION)[0].split(THOUGHT)[-1].split(FINISH)[0]
    if FINISH in text:
        return thought, "FinishAction", text.split(FINISH)[-1]
    actions = re.findall(re.escape(ACTION) + r"(.*?)\n", text)
    args = re.findall(re.escape(ACTION_INPUT) + r"(.*)", text, re.S)
    if not actions or not args:
        return thought, "NoAction", ""
    return thought, actions[-1].strip(), args[-1].strip().strip('"')


def expression_of(argument: str) -> str | None:
    """The expression inside an Action Input like '{"expression": "37 * 48"}', whitespace removed; None if the
    input is not that JSON."""
    try:
        v = json.loads(argument)
    except (ValueError, TypeError):
        return None
    if not isinstance(v, dict) or not isinstance(v.get(PARAM), str):
        return None
    return re.sub(r"\s+", "", v[PARAM])


# ---------------------------------------------------------------------------------------- traces
def _key(a: int, op: str, b: int) -> str:
    return f"{a}{op}{b}"


def is_heldout(a: int, op: str, b: int) -> bool:
    """Whether the question (a, op, b) belongs to the held-out split (a fixed hash: never depends on seed/n)."""
    h = hashlib.sha256(_key(a, op, b).encode()).digest()
    return int.from_bytes(h[:4], "big") % 100 < HELDOUT_PERCENT


def _format_result(x: int) -> str:
    return str(x)  # camp.agents.format_number gives the same for ints


def react_traces(n: int, *, seed: int = 0, tool_name: str = TOOL_NAME, ops=("+", "-", "*"),
                 lang: str = "zh", split: str = "train", digits: int = 2, system: str | None = None,
                 short_system: bool = False, response_role: str = "user") -> list[dict]:
    """n ReAct agent runs as OpenAI-messages records ({"messages": [...], "meta": {...}}); see the module doc.

    lang: "zh", "en" or "both" (alternating). split: "train" or "heldout" (disjoint question sets). digits:
    operands have this many digits. system: the system message (default: Lagent's prompt for the calculator,
    or SHORT_PROTOCOL's with short_system=True). response_role: "user" (trainable with camp.finetune) or
    "system" (Lagent's own layout). meta holds the question's a, op, b, expression and result for checking."""
    if lang not in ("zh", "en", "both"):
        raise CampError(f"lang must be 'zh', 'en' or 'both', not {lang!r}")
    if split not in ("train", "heldout"):
        raise CampError(f"split must be 'train' or 'heldout', not {split!r}")
    if response_role not in ("user", "system"):
        raise CampError(f"response_role must be 'user' (camp.finetune can train it) or 'system' (Lagent's "
                        f"layout), not {response_role!r}")
    bad = [o for o in ops if o not in _OPS]
    if bad or not ops:
        raise CampError(f"ops must be some of {list(_OPS)}, not {list(ops)!r}")
    if not 1 <= digits <= 6:
        raise CampError(f"digits must be 1 to 6, not {digits}")
    if n < 0:
        raise CampError(f"n must be 0 or more, not {n}")
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10 ** digits - 1
    if system is None:
        tools = [dict(CALCULATOR_INFO, name=tool_name)]
        system = lagent_system_prompt(tools, short=short_system)
    rng = random.Random(f"camp-react-{seed}-{split}")
    langs = ["zh", "en"] if lang == "both" else [lang]
    ops = list(ops)
    want_heldout = split == "heldout"
    out: list[dict] = []
    seen: set[str] = set()
    space = len(ops) * (hi - lo + 1) ** 2
    # a held-out set smaller than asked for would silently shrink the evaluation: refuse instead
    if n > space * (HELDOUT_PERCENT if want_heldout else 100 - HELDOUT_PERCENT) // 100 * 0.9:
        raise CampError(f"{n} distinct {split} questions do not exist with {digits}-digit operands and ops "
                        f"{ops} — ask for fewer, or use more digits/ops")
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:  # the estimate above is rough ("-" swaps operands): never loop forever
            raise CampError(f"could not find {n} distinct {split} questions — ask for fewer, or use more digits")
        a, b, op = rng.randint(lo, hi), rng.randint(lo, hi), rng.choice(ops)
        if op == "-" and b > a:
            a, b = b, a  # no negative results: the tiny tokenizer and the questions stay simple
        k = _key(a, op, b)
        if k in seen or is_heldout(a, op, b) != want_heldout:
            continue
        seen.add(k)
        lg = langs[len(out) % len(langs)]
        word = _OPS[op][0] if lg == "zh" else _OPS[op][1]
        question = rng.choice(_TEMPLATES[lg]).format(a=a, b=b, w=word, s=f" {_SYMBOL[op]} ")
        question = question.replace("  ", " ")
        expression = f"{a} {op} {b}"
        result = _format_result(_OPS[op][2](a, b))
        think1, think2 = _REPLIES[lg]
        call = (f"{THOUGHT}{think1}\n{ACTION}{tool_name}\n"
                f"{ACTION_INPUT}{json.dumps({PARAM: expression})}")
        answer = f"{THOUGHT}{think2}\n{FINISH}{result}"
        out.append({
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
                {"role": "assistant", "content": call},
                # ReActProtocol.format_response: begin + result + end ("\n")
                {"role": response_role, "content": f"{RESPONSE}{result}\n"},
                {"role": "assistant", "content": answer},
            ],
            "meta": {"a": a, "op": op, "b": b, "expression": expression, "result": result, "lang": lg,
                     "question": question, "tool": tool_name},
        })
    return out


def heldout(n: int = 20, **kw) -> list[dict]:
    """react_traces(n, split="heldout", **kw): questions that no training split contains."""
    return react_traces(n, split="heldout", **kw)


def for_training(records: list[dict]) -> list[dict]:
    """The records as camp.finetune takes them (messages only, no meta); refuses Lagent's system-role layout."""
    out = []
    for r in records:
        msgs = r["messages"]
        if any(m["role"] == "system" for m in msgs[1:]):
            raise CampError("these traces send the tool's Response as a system message (Lagent's layout), which "
                            "camp.finetune cannot train — build them with response_role='user'")
        out.append({"messages": [dict(m) for m in msgs]})
    return out


def turns(record: dict) -> list[tuple[list[dict], str]]:
    """(prompt messages, expected reply) for each model call of the run: what the agent sends, what the model
    must answer. Two calls per trace: the tool call, then the final answer."""
    msgs = record["messages"]
    return [([dict(m) for m in msgs[:i]], msgs[i]["content"]) for i, m in enumerate(msgs) if m["role"] == "assistant"]


def check_call(reply: str, record: dict) -> bool:
    """Whether a first-turn reply calls the record's tool with its expression (as Lagent would parse it)."""
    _, action, arg = parse_reply(reply)
    return action == record["meta"]["tool"] and expression_of(arg) == record["meta"]["expression"].replace(" ", "")


def check_answer(reply: str, record: dict) -> bool:
    """Whether a second-turn reply is a Final Answer that holds the tool's result."""
    _, action, answer = parse_reply(reply)
    return action == "FinishAction" and _holds(answer, record["meta"]["result"])


def _holds(text: str, number: str) -> bool:
    """Whether `number` stands in `text` as a whole number (not inside a longer one)."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.])", text) is not None


# ---------------------------------------------------------------------------------------- the lesson
# What notebook 05 trains, per device. cpu: measured on the tiny model (2 cores, OMP_NUM_THREADS=1,
# benchmarks/agent_finetune_probe.py, 40 held-out questions): full fine-tuning at lr 2e-3 for 1200 iterations
# (batch 4) on 6000 traces with the short system prompt → 100 % solved end to end, ~150 s of training. It works
# because camp.tiny learns to copy in its pre-training; the fine-tune teaches the ReAct format, the tool name and
# which numbers go where. cuda: a starting point after XTuner's agent recipes (LoRA/QLoRA, lr 2e-4); not measured.
LESSON = {
    "cpu": {"traces": 6000, "method": "full", "lr": 2e-3, "max_iters": 1200, "short_system": True},
    "cuda": {"traces": 1000, "method": "auto", "lr": 2e-4, "max_iters": 600, "short_system": True},
}


def lesson_settings(profile=None) -> dict:
    """The agent fine-tuning settings for `profile` (a name, a Profile or None for this machine)."""
    from camp.runtime import hardware

    prof = hardware.profile(profile)
    return dict(LESSON["cuda" if prof.device == "cuda" else "cpu"])


def solve(agent, records: list[dict]):
    """Ask `agent` each record's question; a DataFrame with what happened: whether it called the calculator,
    what the tool returned, the final answer, and `correct` (the tool ran on the right expression and its
    result is in the final answer). `df.correct.mean()` is the agent's accuracy."""
    import pandas as pd

    rows = []
    for rec in records:
        meta = rec["meta"]
        reply = agent.chat(meta["question"])
        calls = [s for s in reply.steps if s.kind == "action" and s.tool == meta["tool"]]
        results = [s.text.strip() for s in reply.steps if s.kind == "observation" and s.tool == meta["tool"]]
        expr = expression_of(calls[0].text) if calls else None
        ran_right = expr == meta["expression"].replace(" ", "") and meta["result"] in results
        in_answer = _holds(reply.answer, meta["result"])
        rows.append({"question": meta["question"], "expected": meta["result"],
                     "tool_input": calls[0].text if calls else "", "tool_result": results[0] if results else "",
                     "answer": reply.answer, "tool_called": bool(calls), "correct": ran_right and in_answer})
    return pd.DataFrame(rows)
