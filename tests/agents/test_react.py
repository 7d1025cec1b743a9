"""camp.agents.react: Lagent's ReAct loop against a scripted OpenAI-compatible server on 127.0.0.1, camp's tools."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import camp.agents.react as _react
import camp.agents.tools as _tools
from camp.runtime.errors import CampError
from camp.serving.endpoint import Endpoint

MODEL = "/models/some folder/tiny"  # transformers serve names a model by its folder path


class Scripted:
    """A /v1/chat/completions server that replies with the given texts in order and records requests."""

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if body.get("model") != MODEL:
                    data, code = {"error": {"message": f"model {body.get('model')!r} not found", "code": 404}}, 404
                else:
                    text = outer.replies.pop(0) if outer.replies else "Final Answer: (script ran out)"
                    data, code = {"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}]}, 200
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = Endpoint(f"http://127.0.0.1:{self.server.server_address[1]}/v1", MODEL)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    made = []

    def make(replies):
        s = Scripted(replies)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def kinds(reply):
    return [s.kind for s in reply.steps]


def test_tool_call_observation_then_answer(scripted):
    srv = scripted([
        'Thought: I should compute it.\nAction: Calculator\nAction Input: {"expression": "37 * 91 + 5"}\n',
        "Thought: The calculator said 3372.\nFinal Answer: 3372\n",
    ])
    ag = _react.agent(srv.endpoint, [_tools.calculator()])
    reply = ag.chat("What is 37*91+5?")
    assert kinds(reply) == ["thought", "action", "observation", "thought", "answer"]
    action, obs = reply.steps[1], reply.steps[2]
    assert action.tool == "Calculator" and action.args == {"expression": "37 * 91 + 5"}
    assert obs.text == str(37 * 91 + 5) and obs.tool == "Calculator"
    assert reply.answer == "3372"
    # the observation went back to the model in the second request, and the served model name was used
    assert len(srv.requests) == 2
    assert all(r["model"] == MODEL for r in srv.requests)
    assert "Response:3372" in json.dumps(srv.requests[1]["messages"])
    assert "Calculator" in srv.requests[0]["messages"][0]["content"]  # the tool was described to the model
    out = io.StringIO()
    _react.print_steps(reply, out)
    assert "Action: Calculator" in out.getvalue() and "Final Answer: 3372" in out.getvalue()


def test_layout_matches_the_agent_training_traces(scripted):
    """What the agent sends is what camp.agent_data trains on: with prompt="short" the first request is exactly
    [system: the short protocol, user: question], and the tool's Response comes back as a user message — the
    whole second request equals a training trace minus its last reply."""
    from camp.agents import traces as D

    trace = D.react_traces(1, short_system=True)[0]
    first, second = trace["messages"][2]["content"], trace["messages"][4]["content"]
    srv = scripted([first, second])
    reply = _react.agent(srv.endpoint, [_tools.calculator()], prompt="short").chat(trace["meta"]["question"])
    assert reply.answer == trace["meta"]["result"]
    sent = [{k: m[k] for k in ("role", "content")} for m in srv.requests[1]["messages"]]
    assert sent == trace["messages"][:4]
    # Lagent's own layout is still there when asked for
    srv2 = scripted([first, second])
    _react.agent(srv2.endpoint, [_tools.calculator()], response_role="system").chat(trace["meta"]["question"])
    msgs = srv2.requests[1]["messages"]
    assert msgs[0]["content"] == D.lagent_system_prompt()  # Lagent's full protocol by default
    assert msgs[3]["role"] == "system" and msgs[3]["content"].startswith("Response:")
    with pytest.raises(CampError, match="prompt must be"):
        _react.agent(srv.endpoint, [_tools.calculator()], prompt="tiny")


def test_malformed_action_input_gives_clear_error_and_continues(scripted):
    @_tools.tool
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a (int): first
            b (int): second
        """
        return a + b

    srv = scripted([
        'Thought: add them\nAction: add\nAction Input: {"a": 2, "b": \n',
        'Thought: retry\nAction: add\nAction Input: {"a": "2", "b": 3}\n',
        "Thought: done\nFinal Answer: 5\n",
    ])
    reply = _react.agent(srv.endpoint, [add]).chat("2+3?")
    errors = [s for s in reply.steps if s.kind == "error"]
    assert len(errors) == 1 and "not valid" in errors[0].text and '{"a": "...", "b": "..."}' in errors[0].text
    obs = [s for s in reply.steps if s.kind == "observation"]
    assert [o.text for o in obs] == ["5"]  # "2" was coerced to int, so this is 5 and not "23"
    assert reply.answer == "5"
    assert "not valid" in json.dumps(srv.requests[1]["messages"])  # the model was told why


def test_unknown_tool_is_named_in_the_error(scripted):
    srv = scripted([
        'Thought: search the web\nAction: GoogleSearch\nAction Input: {"query": "x"}\n',
        "Thought: no web\nFinal Answer: I cannot search the web.\n",
    ])
    reply = _react.agent(srv.endpoint, [_tools.calculator()]).chat("news?")
    err = [s for s in reply.steps if s.kind == "error"][0]
    assert "unknown tool 'GoogleSearch'" in err.text and "Calculator" in err.text
    assert reply.answer == "I cannot search the web."
    assert "unknown tool 'GoogleSearch'" in json.dumps(srv.requests[1]["messages"])


def test_max_turns_reached_stops_with_a_clear_step(scripted):
    call = 'Thought: again\nAction: Calculator\nAction Input: {"expression": "1+1"}\n'
    srv = scripted([call] * 10)
    reply = _react.agent(srv.endpoint, [_tools.calculator()], max_turns=3).chat("loop")
    assert len(srv.requests) == 3
    assert kinds(reply).count("observation") == 3
    assert reply.steps[-2].kind == "error" and "3 turns" in reply.steps[-2].text
    assert reply.answer == _react.DEFAULT_ANSWER


def test_reply_without_react_format_is_reported(scripted):
    srv = scripted(["Hello there!", "Thought: ok\nFinal Answer: hi"])
    reply = _react.agent(srv.endpoint, [_tools.calculator()]).chat("hi")
    assert any(s.kind == "error" and "ReAct format" in s.text for s in reply.steps)
    assert reply.answer == "hi"


def test_a_wrong_model_name_or_a_dead_server_raises_camp_error(scripted):
    srv = scripted([])
    ep = Endpoint(srv.endpoint.base_url, "wrong-model")  # the scripted server answers 404 for other names
    with pytest.raises(CampError, match="refused the request \\(404: model 'wrong-model' not found\\)"):
        _react.agent(ep, [_tools.calculator()]).chat("x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = Endpoint(f"http://127.0.0.1:{s.getsockname()[1]}/v1", "tiny")  # nothing listens once closed
    with pytest.raises(CampError, match="did not answer"):
        _react.agent(dead, [_tools.calculator()]).chat("x")


def test_run_stream_yields_steps_in_order(scripted):
    srv = scripted(['Thought: t\nAction: Calculator\nAction Input: 6*7\n', "Thought: u\nFinal Answer: 42"])
    steps = list(_react.agent(srv.endpoint, [_tools.calculator()]).run_stream("6*7"))
    assert [s.kind for s in steps] == ["thought", "action", "observation", "thought", "answer"]
    assert steps[2].text == "42"  # raw (non-JSON) input accepted for a one-argument tool


def test_tool_decorator_describes_the_function():
    @_tools.tool
    def word_count(text: str, min_len: int = 1) -> int:
        """Count the words in a text.

        Args:
            text (str): the text
            min_len (int): only count words at least this long
        """
        return len([w for w in text.split() if len(w) >= min_len])

    d = word_count.description
    assert word_count.name == "word_count"
    assert d["description"].startswith("Count the words")
    assert [p["name"] for p in d["parameters"]] == ["text", "min_len"]
    assert d["required"] == ["text"]
    assert word_count.fn("a bb ccc", 2) == 2
    ret = word_count('{"text": "a bb ccc", "min_len": "2"}')
    assert ret.format_result() == "2"

    @_tools.tool
    def word_count(text: str) -> int:  # noqa: F811 — a notebook cell run again
        """Count words.

        Args:
            text (str): the text
        """
        return len(text.split())

    assert word_count("a b").format_result() == "2"

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(CampError, match="docstring"):
        _tools.tool(undocumented)


@pytest.mark.parametrize("expr, value", [("2+3*4", "14"), ("(2+3)*4", "20"), ("7/2", "3.5"), ("6/2", "3"),
                                         ("2**10", "1024"), ("-7//2", "-4"), ("17 % 5", "2"), ("3^2", "9"),
                                         ("1.5e3 + 1", "1501")])
def test_calculator_arithmetic(expr, value):
    assert _tools.format_number(_tools.safe_eval(expr)) == value


@pytest.mark.parametrize("expr", ["__import__('os').system('echo hi')", "x + 1", "(1).__class__",
                                  "open('/etc/passwd')", "[1, 2][0]", "lambda: 1", "9**9**9", "1/0", "'a' * 3"])
def test_calculator_refuses_anything_but_arithmetic(expr):
    with pytest.raises(ValueError):
        _tools.safe_eval(expr)
    ret = _tools.calculator()(json.dumps({"expression": expr}))
    assert ret.errmsg and ret.state != 0  # comes back to the agent as an error, not an exception


@pytest.mark.parametrize("query, expected", [
    ("XTuner LoRA 微调", "03_xtuner.md"),
    ("LMDeploy 部署 量化", "05_lmdeploy.md"),
    ("OpenCompass 评测", "04_opencompass.md"),
    ("Lagent ReAct 智能体 工具", "06_agents.md"),
    ("HuixiangDou", "07_huixiangdou.md"),
])
def test_course_search_finds_the_right_document(query, expected):
    search = _tools.course_search()
    assert search.kb.search(query)[0].source == expected
    assert search(json.dumps({"query": query})).format_result().startswith(f"[{expected}:")


def test_widget_shows_steps(scripted):
    pytest.importorskip("ipywidgets")
    srv = scripted(['Thought: t\nAction: Calculator\nAction Input: {"expression": "2+2"}\n',
                    "Thought: u\nFinal Answer: 4"])
    w = _react.agent(srv.endpoint, [_tools.calculator()]).widget()
    reply = w.ask("2+2?")
    assert reply.answer == "4"
    html = "".join(c.value for c in w.log.children)
    assert "camp-agent-thought" in html and "<details" in html  # thoughts are collapsible
    assert "🔧 Calculator" in html and "camp-agent-observation" in html and "✅ 4" in html


def test_python_tool_runs_in_the_sandbox_and_refusals_come_back_as_observations(scripted, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    srv = scripted([
        'Thought: compute with code.\nAction: PythonSandbox\nAction Input: {"code": "print(sum(range(10)))"}\n',
        f'Thought: peek.\nAction: PythonSandbox\nAction Input: {{"code": "print(open({str(secret)!r}).read())"}}\n',
        "Thought: done.\nFinal Answer: 45\n",
    ])
    ag = _react.agent(srv.endpoint, [_tools.python(timeout=10)])
    reply = ag.chat("What is the sum of 0..9?")
    obs = [s for s in reply.steps if s.kind == "observation"]
    assert obs[0].text.strip().startswith("45")
    assert "do not read me" not in obs[1].text and "outside the sandbox" in obs[1].text
    assert reply.answer == "45"  # the agent loop survived the refusal
