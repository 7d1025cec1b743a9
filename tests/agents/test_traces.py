"""ReAct traces for agent fine-tuning (camp.agent_data): the format Lagent 0.2.4 sends and parses."""

from __future__ import annotations

import json

import pytest

from camp import data
from camp.agents import traces as D
from camp.runtime.errors import CampError

# Captured from lagent 0.2.4: ReActProtocol().format([], [user], ActionExecutor([camp.agents.calculator()]))[0]
LAGENT_SYSTEM = """You are a assistant who can utilize external tools.
[{'name': 'Calculator', 'description': 'Evaluate an arithmetic expression with numbers and + - * / // % ** and parentheses.', 'parameters': [{'name': 'expression', 'type': 'STRING', 'description': 'the expression, e.g. (3 + 4) * 12'}], 'required': ['expression'], 'parameter_description': 'If you call this tool, you must pass arguments in the JSON format {key: value}, where the key is the parameter name.'}]
To use a tool, please use the following format:
```
Thought:Think what you need to solve, do you need to use tools?
Action:the tool name, should be one of [['Calculator']]
Action Input:the input to the action
```
The response after utilizing tools should using the following format:
```
Response:the results after call the tool.
```
If you already know the answer, or you do not need to use tools,
please using the following format to reply:
```
Thought:the thought process to get the final answer
Final Answer:final answer
```
Begin!"""  # noqa: E501


def test_system_prompt_is_lagents_own():
    assert D.lagent_system_prompt() == LAGENT_SYSTEM
    short = D.lagent_system_prompt(short=True)
    assert len(short) < len(LAGENT_SYSTEM) / 2
    for word in (D.THOUGHT, D.ACTION, D.ACTION_INPUT, D.RESPONSE, D.FINISH, "Calculator"):
        assert word in short


def test_trace_layout_and_content():
    recs = D.react_traces(30, lang="both")
    assert len(recs) == 30
    for r in recs:
        m, meta = r["messages"], r["meta"]
        assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant"]
        assert m[0]["content"] == LAGENT_SYSTEM
        assert str(meta["a"]) in m[1]["content"] and str(meta["b"]) in m[1]["content"]
        # turn 1: what Lagent parses into the calculator call with the question's expression
        thought, action, arg = D.parse_reply(m[2]["content"])
        assert action == "Calculator" and thought
        assert json.loads(arg) == {"expression": meta["expression"]}
        assert str(eval(meta["expression"])) == meta["result"]  # the numbers are the question's own
        # the tool's observation, as ReActProtocol.format_response writes it
        assert m[3]["content"] == f"Response:{meta['result']}\n"
        # turn 2: a final answer that holds the tool's result
        _, action2, answer = D.parse_reply(m[4]["content"])
        assert action2 == "FinishAction" and answer == meta["result"]
        assert D.check_call(m[2]["content"], r) and D.check_answer(m[4]["content"], r)
    assert {r["meta"]["lang"] for r in recs} == {"zh", "en"}
    assert {r["meta"]["op"] for r in D.react_traces(60)} == {"+", "-", "*"}


def test_lagent_layout_sends_response_as_system():
    r = D.react_traces(1, response_role="system")[0]
    assert r["messages"][3]["role"] == "system"
    with pytest.raises(CampError, match="response_role='user'"):
        D.for_training([r])


def test_parse_reply_follows_lagents_rules():
    assert D.parse_reply('Thought:x\nAction:Calculator\nAction Input:"1 + 2"') == ("x\n", "Calculator", "1 + 2")
    assert D.parse_reply("Thought:x\nAction:Calculator")[1] == "NoAction"  # Action: must end its line
    assert D.parse_reply("just text")[1] == "NoAction"
    assert D.parse_reply("Thought:t\nFinal Answer:42")[1:] == ("FinishAction", "42")


def test_checks_reject_wrong_replies():
    r = D.react_traces(1, seed=3)[0]
    a, b = r["meta"]["a"], r["meta"]["b"]
    wrong_call = f'Thought:t\nAction:Calculator\nAction Input:{{"expression": "{a} + {b + 1}"}}'
    assert not D.check_call(wrong_call, r)
    assert not D.check_call(r["messages"][2]["content"].replace("Calculator", "Search"), r)
    assert not D.check_answer("Thought:t\nFinal Answer:" + r["meta"]["result"] + "1", r)
    assert not D.check_answer("Thought:t\nAction:Calculator\nAction Input:{}", r)


def test_deterministic_and_seeded():
    assert D.react_traces(20, seed=1) == D.react_traces(20, seed=1)
    assert D.react_traces(20, seed=1) != D.react_traces(20, seed=2)
    assert D.react_traces(10) == D.react_traces(20)[:10]


def test_heldout_is_disjoint_from_every_training_split():
    test = D.heldout(50, lang="both")
    assert len(test) == 50
    keys = {(r["meta"]["a"], r["meta"]["op"], r["meta"]["b"]) for r in test}
    assert len(keys) == 50
    for seed in range(3):
        for lang in ("zh", "en", "both"):
            train = D.react_traces(1000, seed=seed, lang=lang)
            assert not keys & {(r["meta"]["a"], r["meta"]["op"], r["meta"]["b"]) for r in train}
    questions = {r["meta"]["question"] for r in test}
    assert not questions & {r["meta"]["question"] for r in D.react_traces(2000, lang="both")}


def test_training_records_load_as_camp_data():
    recs = D.for_training(D.react_traces(5, short_system=True))
    loaded = data.load(recs)
    assert len(loaded) == 5
    conv = data.to_xtuner(loaded[0])["conversation"]
    assert len(conv) == 2 and conv[0]["system"] == D.lagent_system_prompt(short=True)
    assert conv[1]["input"].startswith("Response:")


def test_turns_are_the_agents_two_calls():
    r = D.react_traces(1)[0]
    (p1, want1), (p2, want2) = D.turns(r)
    assert [m["role"] for m in p1] == ["system", "user"] and want1 == r["messages"][2]["content"]
    assert len(p2) == 4 and want2 == r["messages"][4]["content"]


def test_bad_arguments_say_what_to_do():
    with pytest.raises(CampError, match="lang"):
        D.react_traces(1, lang="fr")
    with pytest.raises(CampError, match="ops"):
        D.react_traces(1, ops=("/",))
    with pytest.raises(CampError, match="fewer"):
        D.heldout(100, digits=1)
