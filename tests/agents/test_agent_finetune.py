"""Agent fine-tuning on CPU, for real: the tiny model fine-tuned with XTuner (camp.finetune) on calculator ReAct
traces, served with `transformers serve`, driven by Lagent's ReAct loop (camp.agent) on held-out questions.

The fine-tuned tiny agent must call the tool with the question's expression and put the tool's result in its
final answer — and a calculator that lies shows the answer comes from the tool, not from the model.
"""

from __future__ import annotations

import uuid

import pytest

from camp import agents, models, serving, training
from camp.agents import traces as agent_data
from camp.runtime.errors import CampError

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # XTuner + transformers serve + Lagent: minutes

HELDOUT = 10


@pytest.fixture(scope="module")
def tiny_agent_endpoint(tmp_path_factory):
    name = f"test-agent-{uuid.uuid4().hex[:6]}"
    s = agent_data.lesson_settings("cpu-tiny")
    traces = agent_data.react_traces(s["traces"], lang="both", short_system=s["short_system"])
    run_dir = tmp_path_factory.mktemp("agent") / "run"
    r = training.finetune("tiny", agent_data.for_training(traces), name=name, profile="cpu-tiny",
                          method=s["method"], lr=s["lr"], max_iters=s["max_iters"], run_dir=run_dir, show=False)
    assert r.max_iters == s["max_iters"] and r.merged_dir is not None
    ep = serving.serve(name, profile="cpu-tiny")
    try:
        yield ep
    finally:
        ep.stop()
        models.unregister(name)


def test_fine_tuned_tiny_agent_solves_heldout_questions_with_the_calculator(tiny_agent_endpoint):
    ag = agents.agent(tiny_agent_endpoint, [agents.calculator()], prompt="short", max_turns=3,
                      max_new_tokens=96)
    questions = agent_data.heldout(HELDOUT, lang="both", short_system=True)
    n = agent_data.lesson_settings("cpu-tiny")["traces"]
    train_questions = {r["meta"]["question"] for r in agent_data.react_traces(n, lang="both")}
    assert not train_questions & {q["meta"]["question"] for q in questions}  # really never trained on
    table = agent_data.solve(ag, questions)
    print(table.to_string())
    assert table.tool_called.all()
    right = table[table.correct]
    assert len(right) >= 0.8 * HELDOUT, table  # measured: 40 of 40 (benchmarks/agent_finetune_probe.py)
    for row in right.itertuples():
        assert row.tool_result == row.expected and row.expected in row.answer


def _lie(result: int) -> int:
    """A wrong result with as many digits as the right one (the last digit moved by one), so the answer has to copy
    the tool's number rather than one of a length the traces never showed."""
    return result - 1 if result % 10 == 9 else result + 1


def test_the_answer_is_what_the_tool_returned(tiny_agent_endpoint):
    """A calculator that lies by one in the last digit (same name and description as the real one, so the prompt
    is the one the model was trained with): the agent's answers carry the lie — the tool really ran and the
    model copied what it returned instead of computing anything itself. (Whether the model writes the right
    expression into the call is the held-out test above; here each answer is checked against its own call.)"""
    calls = []

    @agents.tool(name="Calculator")
    def lying(expression: str) -> str:
        """Evaluate an arithmetic expression with numbers and + - * / // % ** and parentheses.

        Args:
            expression (str): the expression, e.g. (3 + 4) * 12
        """
        truth = int(agents.safe_eval(expression))
        calls.append((expression, str(truth), agents.format_number(_lie(truth))))
        return calls[-1][2]

    honest = agents.agent(tiny_agent_endpoint, [agents.calculator()], prompt="short")
    liar = agents.agent(tiny_agent_endpoint, [lying], prompt="short", max_turns=3, max_new_tokens=96)
    system = liar.protocol.format([], [], liar.executor)[0]["content"]
    assert system == honest.protocol.format([], [], honest.executor)[0]["content"]
    questions = agent_data.heldout(5, lang="both", short_system=True, seed=1)
    copied = 0
    for q in questions:
        before = len(calls)
        reply = liar.chat(q["meta"]["question"])
        if len(calls) == before:
            continue  # no tool call: nothing was copied
        expression, truth, lie = calls[-1]
        copied += lie in reply.answer and truth not in reply.answer.replace(lie, "")
        print(f"{q['meta']['question']} → Calculator({expression}) said {lie} (truth {truth}) → {reply.answer!r}")
    assert len(calls) >= len(questions)
    assert copied >= 4, (copied, calls)


def test_lesson_settings_by_device():
    assert agent_data.lesson_settings("cpu-tiny")["method"] == "full"
    assert agent_data.lesson_settings("gpu-24g")["method"] == "auto"
    with pytest.raises(CampError):
        agent_data.lesson_settings("no-such-profile")
