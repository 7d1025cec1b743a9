"""Agents: a Lagent 0.2.4 ReAct loop over a camp Endpoint, with camp's tools.

    ag = camp.agent(endpoint, tools=[camp.agents.calculator(), camp.agents.course_search()])
    reply = ag.chat("What is 37 * 91?")       # AgentReply(answer, steps)
    for step in ag.run_stream("..."): ...      # Steps as they happen
    ag.widget()                                # live JupyterLab view

The loop itself is Lagent's `ReAct.chat`; camp only hooks the model call and the tool executor so every
Thought / Action / Observation reaches the caller as it happens, and replaces Lagent's unhelpful messages for
unknown tools and badly formatted replies with ones that say what went wrong.

`tool(fn)` turns a typed function with a Google-style docstring into a Lagent action. Built-in tools:
`calculator()` (an ast-based arithmetic evaluator: no names, no attributes, no calls), `course_search()` (BM25
over assets/corpus/*.md) and `python()` (model-written code through camp.sandbox.run_python).

Lagent is imported only when an agent or tool is built: `import camp.agents` stays cheap.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import operator
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from camp.errors import CampError

DEFAULT_ANSWER = "Sorry that I cannot answer your question."  # Lagent's own reply when turns run out
STEP_KINDS = ("thought", "action", "observation", "answer", "error")


@dataclass
class Step:
    """One step of an agent run. kind: thought | action | observation | answer | error."""
    kind: str
    text: str
    tool: str | None = None
    args: dict | str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "tool": self.tool, "args": self.args}


@dataclass
class AgentReply:
    answer: str
    steps: list[Step] = field(default_factory=list)

    @property
    def tool_calls(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "action"]

    def __str__(self) -> str:
        return self.answer


def _lagent():
    try:
        import lagent  # noqa: F401
        from lagent.actions import ActionExecutor, BaseAction, tool_api
        from lagent.actions.parser import JsonParser, ParseError
        from lagent.agents.react import ReAct, ReActProtocol
        from lagent.llms import GPTAPI
        from lagent.schema import ActionReturn, ActionStatusCode, ActionValidCode
    except ImportError as exc:
        raise CampError(f"Lagent is not installed in this environment ({exc}) — it belongs to the core env: "
                        "`python -m camp env create core` (lagent==0.2.4)") from exc
    return dict(ActionExecutor=ActionExecutor, BaseAction=BaseAction, tool_api=tool_api, JsonParser=JsonParser,
                ParseError=ParseError, ReAct=ReAct, ReActProtocol=ReActProtocol, GPTAPI=GPTAPI,
                ActionReturn=ActionReturn, ActionStatusCode=ActionStatusCode, ActionValidCode=ActionValidCode)


# ---------------------------------------------------------------------------------------------- tools
_PY_TYPES = {int: int, float: float, bool: bool, str: str}


def _coerce(value, annotation):
    """Small models write {"a": "3"}; convert to the declared scalar type when that is lossless."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation, annotation)
    target = _PY_TYPES.get(annotation)
    if target is None or isinstance(value, target) and not (target is int and isinstance(value, bool)):
        return value
    try:
        if target is int and isinstance(value, (str, float)):
            f = float(value)
            return int(f) if f.is_integer() else value
        if target is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            return float(value)
        if target is str:
            return str(value)
        if target is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    except ValueError:
        pass
    return value


def _lenient_parser(L):
    """Lagent's JsonParser, plus: a single-parameter tool also accepts the raw text (models often write
    `Action Input: 2+3` or a bare code block), and JSON errors say what the model should have written."""

    class CampParser(L["JsonParser"]):
        def parse_inputs(self, inputs, name="run"):
            params = self._api2param[name]
            if isinstance(inputs, str):
                text = inputs.strip()
                fenced = re.match(r"^```[a-zA-Z]*\n(.*?)\n?```$", text, re.S)
                if fenced and not text.startswith("```json"):
                    text = fenced.group(1)
                if len(params) == 1 and not text.startswith("{"):
                    return {params[0]["name"]: text}
                try:
                    return super().parse_inputs(text, name)
                except L["ParseError"] as exc:
                    example = json.dumps({p["name"]: "..." for p in params})
                    raise L["ParseError"](f"Action Input is not valid for this tool ({exc.err_msg}) — write it "
                                          f"as JSON: {example}") from None
            return super().parse_inputs(inputs, name)

    return CampParser


def _unique_tool_class(L, name: str, attrs: dict):
    """Lagent registers every BaseAction subclass by name (unique); a notebook cell run twice would fail,
    so drop an earlier class of the same name first."""
    from lagent.actions.base_action import TOOL_REGISTRY

    try:
        TOOL_REGISTRY.unregister(name)
    except Exception:  # not registered yet
        pass
    attrs = {"__tool_name__": name, **attrs}
    return type(name, (L["BaseAction"],), attrs)


def tool(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: a typed function with a Google-style docstring (summary line, `Args:` section) → a Lagent
    action instance the agent can call. The model passes arguments as JSON; scalar strings are converted to
    the annotated int/float/bool. The function stays callable through `.fn`.

        @camp.tool
        def add(a: int, b: int) -> int:
            '''Add two integers.

            Args:
                a (int): the first number
                b (int): the second number
            '''
            return a + b
    """
    if fn is None:
        return lambda f: tool(f, name=name)
    if not callable(fn):
        raise CampError(f"@tool decorates a function, not {type(fn).__name__}")
    L = _lagent()
    doc = inspect.getdoc(fn)
    if not doc:
        raise CampError(f"{fn.__name__} has no docstring — the model only knows a tool by its description: "
                        "add a summary line and an Args: section (Google style)")
    sig = inspect.signature(fn)
    try:
        hints = __import__("typing").get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {k: p.annotation for k, p in sig.parameters.items()}

    def run(self, **kwargs):
        kwargs = {k: _coerce(v, hints.get(k)) for k, v in kwargs.items()}
        return fn(**kwargs)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()]
    run.__signature__ = sig.replace(parameters=params)
    run.__doc__ = doc
    run.__name__ = "run"
    tool_name = name or fn.__name__
    summary = doc.strip().splitlines()[0]
    cls = _unique_tool_class(L, tool_name, {"__doc__": summary, "run": L["tool_api"](run), "__module__": __name__})
    inst = cls(parser=_lenient_parser(L))
    inst.fn = fn
    return inst


# calculator ------------------------------------------------------------------------------------
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_DIGITS = 1000  # keeps 9**9**9 from eating the kernel


def safe_eval(expression: str):
    """Evaluate arithmetic only: numbers, + - * / // % **, unary +/-, parentheses. Anything else (names,
    attributes, calls, subscripts …) raises ValueError naming what was refused."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    text = text.rstrip("=").strip()
    if not text:
        raise ValueError("empty expression")
    if len(text) > 2000:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r} ({exc.msg})") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                if abs(b) > 10_000 or (abs(a) > 1 and abs(b) * math.log10(abs(a)) > _MAX_DIGITS):
                    raise ValueError("result too large")
            try:
                r = _BINOPS[type(node.op)](a, b)
            except ZeroDivisionError:
                raise ValueError("division by zero") from None
            if isinstance(r, complex):
                raise ValueError("result is not a real number")
            if isinstance(r, int) and r.bit_length() > _MAX_DIGITS * 3.33:
                raise ValueError("result too large")
            return r
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        what = {ast.Name: "names", ast.Attribute: "attributes", ast.Call: "function calls",
                ast.Subscript: "subscripts"}.get(type(node), type(node).__name__)
        raise ValueError(f"only numbers and + - * / // % ** ( ) are allowed, not {what}")

    return ev(tree)


def format_number(x) -> str:
    if isinstance(x, float):
        if math.isinf(x) or math.isnan(x):
            return str(x)
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return format(x, ".12g")
    return str(x)


def calculator():
    """A Lagent action `Calculator` that evaluates one arithmetic expression safely."""
    L = _lagent()

    def run(self, expression: str) -> str:
        """Evaluate an arithmetic expression with numbers and + - * / // % ** and parentheses.

        Args:
            expression (str): the expression, e.g. (3 + 4) * 12

        Returns:
            str: the value
        """
        return format_number(safe_eval(str(expression)))

    cls = _unique_tool_class(L, "Calculator", {"__doc__": "Calculator for arithmetic.",
                                               "run": L["tool_api"](run), "__module__": __name__})
    return cls(parser=_lenient_parser(L))


# course search ----------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9_.+-]+|[\u3400-\u9fff]+")


def _tokens(text: str) -> list[str]:
    """ASCII words, and CJK runs as character bigrams (Chinese has no spaces; bigrams match well enough)."""
    out = []
    for w in _WORD.findall(text.lower()):
        if "\u3400" <= w[0] <= "\u9fff":
            out += [w[i:i + 2] for i in range(len(w) - 1)] or [w]
        else:
            w = w.strip(".+-")
            if w:
                out.append(w)
    return out


class CorpusIndex:
    """BM25 over markdown files (one document per file)."""

    def __init__(self, folder: Path | str | None = None, k1: float = 1.5, b: float = 0.75):
        from camp import config

        self.folder = Path(folder) if folder else config.assets_dir() / "corpus"
        self.files = sorted(self.folder.glob("*.md"))
        if not self.files:
            raise CampError(f"no course documents (*.md) in {self.folder}")
        self.texts = [f.read_text(encoding="utf-8") for f in self.files]
        self.docs = [_tokens(t) for t in self.texts]
        self.k1, self.b = k1, b
        self.avgdl = sum(map(len, self.docs)) / len(self.docs)
        self.df: dict[str, int] = {}
        for d in self.docs:
            for t in set(d):
                self.df[t] = self.df.get(t, 0) + 1

    def scores(self, query: str) -> list[float]:
        n = len(self.docs)
        q = _tokens(query)
        out = []
        for d in self.docs:
            tf: dict[str, int] = {}
            for t in d:
                tf[t] = tf.get(t, 0) + 1
            s = 0.0
            for t in q:
                if t not in tf:
                    continue
                idf = math.log(1 + (n - self.df[t] + 0.5) / (self.df[t] + 0.5))
                f = tf[t]
                s += idf * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * len(d) / self.avgdl))
            out.append(s)
        return out

    def search(self, query: str, k: int = 2) -> list[tuple[Path, float, str]]:
        """(file, score, best paragraph) for the k best files with a positive score."""
        ranked = sorted(zip(self.files, self.scores(query), self.texts, strict=True), key=lambda x: -x[1])
        hits = []
        q = set(_tokens(query))
        for f, s, text in ranked[:k]:
            if s <= 0:
                break
            paras = [p.strip() for p in text.split("\n\n") if p.strip()]
            best = max(paras, key=lambda p: len(q & set(_tokens(p))))
            hits.append((f, s, best))
        return hits


def course_search(folder: Path | str | None = None, k: int = 2):
    """A Lagent action `CourseSearch` over the course's own documents (assets/corpus/*.md)."""
    L = _lagent()
    index = CorpusIndex(folder)

    def run(self, query: str) -> str:
        """Search the course documents (InternLM, XTuner, LMDeploy, OpenCompass, Lagent, HuixiangDou …).

        Args:
            query (str): keywords to look for

        Returns:
            str: the best matching documents with a relevant paragraph
        """
        hits = index.search(str(query), k=k)
        if not hits:
            return f"no course document matches {query!r}"
        return "\n\n".join(f"[{f.name}] {para[:600]}" for f, _, para in hits)

    cls = _unique_tool_class(L, "CourseSearch", {"__doc__": "Search the course documents.",
                                                 "run": L["tool_api"](run), "__module__": __name__})
    inst = cls(parser=_lenient_parser(L))
    inst.index = index
    return inst


# python (sandboxed) ------------------------------------------------------------------------------
def python(timeout: float = 10.0, memory_mb: int = 1024):
    """A Lagent action `PythonSandbox`: model-written code runs through camp.sandbox.run_python (separate
    process, time/memory/process limits, private working directory); what it prints comes back."""
    L = _lagent()

    def run(self, code: str) -> str:
        """Run Python code in a sandbox and return what it prints. Use print() to show results.

        Args:
            code (str): the Python source code

        Returns:
            str: printed output, or the error
        """
        from camp.sandbox import run_python  # lazily: the sandbox is only needed when the model writes code

        return run_python(str(code), timeout=timeout, memory_mb=memory_mb).observation()

    cls = _unique_tool_class(L, "PythonSandbox", {"__doc__": "Sandboxed Python interpreter.",
                                                  "run": L["tool_api"](run), "__module__": __name__})
    return cls(parser=_lenient_parser(L))


def default_tools() -> list:
    return [calculator(), course_search(), python()]


def call(tool, **kwargs) -> str:
    """Run one tool by hand, as the agent would for `Action Input: {kwargs as JSON}`: the result text, or
    "error: …" saying why it failed."""
    L = _lagent()
    ret = tool(json.dumps(kwargs, ensure_ascii=False))
    if ret.state == L["ActionStatusCode"].SUCCESS:
        return ret.format_result()
    return f"error: {ret.errmsg}"


# ---------------------------------------------------------------------------------------------- agent
PROMPTS = ("lagent", "short")


def _protocol(L, *, prompt: str, response_role: str, preamble: str | None):
    """Lagent's ReActProtocol with two choices camp's agent fine-tuning needs (see camp.agent_data):
    prompt "short" sends agent_data.SHORT_PROTOCOL's system message instead of Lagent's ~500-token one, and
    the tool's `Response:` goes back as a `response_role` message — "user" by default, because Lagent's
    mid-conversation system message has no place in chat fine-tuning data (XTuner renders it with an extra
    empty user turn), so a model trained on camp's traces would see a layout it never learnt."""
    from camp import agent_data

    class CampProtocol(L["ReActProtocol"]):
        def format(self, chat_history, inner_step, action_executor, force_stop=False):
            msgs = super().format(chat_history, inner_step, action_executor, force_stop)
            if prompt == "short":
                msgs[0] = dict(role="system", content=agent_data.lagent_system_prompt(
                    action_executor.get_actions_info(), short=True))
            if preamble:
                msgs[0] = dict(msgs[0], content=preamble.strip() + "\n" + msgs[0]["content"])
            return msgs

        def format_response(self, action_return):
            return dict(super().format_response(action_return), role=response_role)

    return CampProtocol()


def _endpoint(target, api_key):
    from camp import serving

    if isinstance(target, serving.Endpoint):
        return target
    if isinstance(target, str) and re.match(r"^https?://", target):
        return serving.Endpoint.from_url(target, api_key=api_key)
    return serving.serve(target, api_key=api_key)


def _json_or_text(text: str):
    try:
        v = json.loads(text)
        return v if isinstance(v, dict) else text
    except (ValueError, TypeError):
        return text


class Agent:
    """A Lagent ReAct agent over an Endpoint. `chat(q)` → AgentReply; `run_stream(q)` yields Steps live;
    `widget()` shows them in JupyterLab. `react` is the underlying lagent ReAct object."""

    def __init__(self, endpoint, tools: list, *, max_turns: int = 4, system: str | None = None,
                 prompt: str = "lagent", response_role: str = "user", **gen):
        L = _lagent()
        if prompt not in PROMPTS:
            raise CampError(f"prompt must be one of {PROMPTS} ('short' for small fine-tuned models), not {prompt!r}")
        if response_role not in ("user", "system"):
            raise CampError(f"response_role must be 'user' or 'system' (Lagent's own), not {response_role!r}")
        self.prompt, self.response_role = prompt, response_role
        self.endpoint = endpoint
        self.max_turns = max_turns
        self.tools = list(tools)
        for t in self.tools:
            if not isinstance(t, L["BaseAction"]):
                raise CampError(f"{t!r} is not a tool — decorate functions with @camp.tool, or pass "
                                "camp.agents.calculator(), course_search(), python()")
        self._emit: Callable[[Step], None] | None = None
        agent = self
        served = endpoint.model

        class CampGPTAPI(L["GPTAPI"]):
            # Lagent sends model_type as the request's `model`; servers (transformers serve: the folder path)
            # need the endpoint's own name, while model_type must start with 'gpt' for Lagent to build the body.
            def generate_request_data(self, model_type, messages, gen_params, json_mode=False):
                # top_k is not an OpenAI parameter (Lagent warns on every call)
                gen_params = {k: v for k, v in gen_params.items() if k != "top_k"}
                header, data = super().generate_request_data(model_type, messages, gen_params, json_mode)
                if isinstance(data, dict):
                    data["model"] = served
                    data = {k: v for k, v in data.items() if v is not None}
                    if not data.get("frequency_penalty"):
                        data.pop("frequency_penalty", None)
                return header, data

            def _chat(self, messages, **kw):
                try:
                    reply = super()._chat(messages, **kw)
                except RuntimeError as exc:
                    raise CampError(f"the model server {endpoint.base_url} did not answer ({exc}) — is it "
                                    "running? endpoint.healthy()") from exc
                agent._on_model_reply(reply)
                return reply

        class CampExecutor(L["ActionExecutor"]):
            def __call__(self, name, command):
                name = (name or "").strip()
                if (name not in self.actions and name not in (self.no_action.name, self.finish_action.name)):
                    lower = {k.lower(): k for k in self.actions}
                    name = lower.get(name.lower(), name)
                if name in (self.no_action.name, self.finish_action.name) or self.is_valid(name.split(".")[0]):
                    ret = super().__call__(name, command)
                else:
                    # Lagent's InvalidAction echoes the Action Input as its error; say what is wrong instead
                    ret = L["ActionReturn"](args={"text": command}, type=self.invalid_action.name,
                                            errmsg=f"unknown tool {name!r} — use one of "
                                                   f"{', '.join(self.action_names())}",
                                            state=L["ActionStatusCode"].API_ERROR,
                                            valid=L["ActionValidCode"].INVALID)
                agent._on_action_return(self, name, ret)
                return ret

        self._finish_name = "FinishAction"
        self._no_action_name = "NoAction"
        self.llm = CampGPTAPI(model_type="gpt-camp", key=endpoint.api_key or "EMPTY",
                              openai_api_base=endpoint.base_url + "/chat/completions", query_per_second=1000,
                              retry=1, **{"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512, **gen})
        protocol = _protocol(L, prompt=prompt, response_role=response_role, preamble=system)
        self.protocol = protocol
        self.executor = CampExecutor(actions=self.tools)
        self.react = L["ReAct"](llm=self.llm, action_executor=self.executor, protocol=protocol,
                                max_turn=max_turns)

    # hooks called from inside Lagent's loop ------------------------------------------------------
    def _send(self, step: Step) -> None:
        if self._emit is not None:
            self._emit(step)

    def _on_model_reply(self, reply: str) -> None:
        thought, action, action_input = self.protocol.parse(reply, self.executor)
        if thought.strip():
            self._send(Step("thought", thought.strip()))
        if action not in (self.executor.finish_action.name, self.executor.no_action.name):
            self._send(Step("action", action_input, tool=action.strip(), args=_json_or_text(action_input)))

    def _on_action_return(self, executor, name: str, ret) -> None:
        L = _lagent()
        if name == executor.finish_action.name:
            self._send(Step("answer", ret.format_result().strip()))
        elif name == executor.no_action.name:
            self._send(Step("error", "the reply had neither `Action:` + `Action Input:` nor `Final Answer:` — "
                                     "the agent asks the model to follow the ReAct format"))
        elif ret.state == L["ActionStatusCode"].SUCCESS:
            self._send(Step("observation", ret.format_result(), tool=name))
        else:
            self._send(Step("error", ret.errmsg or "the tool failed", tool=name))

    # public ------------------------------------------------------------------------------------------
    def run_stream(self, question: str) -> Iterator[Step]:
        """Yield Steps while Lagent's ReAct loop runs (it runs in a worker thread)."""
        q: queue.Queue = queue.Queue()
        done = object()
        result: dict = {}

        def work():
            self._emit = q.put
            try:
                result["ret"] = self.react.chat(question)
            except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
                result["exc"] = exc
            finally:
                self._emit = None
                q.put(done)

        th = threading.Thread(target=work, daemon=True, name="camp-agent")
        th.start()
        answered = False
        while True:
            item = q.get()
            if item is done:
                break
            answered = answered or item.kind == "answer"
            yield item
        th.join()
        if "exc" in result:
            exc = result["exc"]
            if isinstance(exc, CampError):
                raise exc
            raise CampError(f"the agent loop failed: {type(exc).__name__}: {exc}") from exc
        if not answered:
            yield Step("error", f"no Final Answer after {self.max_turns} turns (max_turns) — the agent stopped")
            yield Step("answer", result["ret"].response or DEFAULT_ANSWER)

    def chat(self, question: str) -> AgentReply:
        steps = list(self.run_stream(question))
        answers = [s.text for s in steps if s.kind == "answer"]
        return AgentReply(answers[-1] if answers else DEFAULT_ANSWER, steps)

    def widget(self, question: str | None = None):
        from camp.ui.agent_view import AgentWidget

        w = AgentWidget(self)
        if question:
            w.ask(question)
        return w

    def __repr__(self) -> str:
        return (f"Agent({self.endpoint.model!r} at {self.endpoint.base_url}, tools="
                f"{[t.name for t in self.tools]}, max_turns={self.max_turns})")


def agent(target, tools=None, *, max_turns: int = 4, system: str | None = None, api_key: str | None = None,
          prompt: str = "lagent", response_role: str = "user", **gen) -> Agent:
    """A Lagent ReAct agent. `target`: a camp Endpoint, an endpoint URL ('http://host:port/v1#model'), or
    anything camp.serve accepts (served first). `tools`: Lagent actions (default: calculator, course search,
    sandboxed python). `system`: text put before the ReAct instructions. `prompt`: "lagent" (Lagent's own
    ReAct instructions) or "short" (the short ones camp.agent_data trains small models on). `response_role`:
    the role of the tool's `Response:` message ("user", or Lagent's "system"). `gen`: generation settings
    (temperature 0 by default, max_new_tokens 512)."""
    ep = _endpoint(target, api_key)
    if api_key and not ep.api_key:
        ep.api_key = api_key
    return Agent(ep, default_tools() if tools is None else tools, max_turns=max_turns, system=system,
                 prompt=prompt, response_role=response_role, **gen)


# ---------------------------------------------------------------------------------------------- terminal
_LABEL = {"thought": "Thought", "action": "Action", "observation": "Observation", "answer": "Final Answer",
          "error": "Error"}


def format_step(step: Step) -> str:
    if step.kind == "action":
        args = json.dumps(step.args, ensure_ascii=False) if isinstance(step.args, dict) else step.text
        return f"Action: {step.tool}({args})"
    label = _LABEL.get(step.kind, step.kind)
    text = step.text.rstrip()
    if step.tool and step.kind in ("observation", "error"):
        label += f" [{step.tool}]"
    return f"{label}: {text}" if "\n" not in text else f"{label}:\n  " + text.replace("\n", "\n  ")


def print_steps(reply_or_steps, file=None) -> None:
    """Print an AgentReply's (or an iterable of Steps') steps, one labelled block each, as they come."""
    file = file or sys.stdout
    steps = reply_or_steps.steps if isinstance(reply_or_steps, AgentReply) else reply_or_steps
    for s in steps:
        print(format_step(s), file=file, flush=True)


def cli_agent(args) -> int:
    """`camp agent TARGET QUESTION… [--max-turns N] [--tools calculator,search,python]`: steps printed live."""
    names = [t.strip() for t in (getattr(args, "tools", None) or "calculator,search,python").split(",") if t]
    makers = {"calculator": calculator, "search": course_search, "python": python}
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise CampError(f"unknown tool(s) {unknown} — choose from {', '.join(makers)}")
    question = " ".join(args.question) if isinstance(args.question, list) else args.question
    ag = agent(args.target, [makers[n]() for n in names], max_turns=getattr(args, "max_turns", None) or 4,
               api_key=getattr(args, "api_key", None), prompt=getattr(args, "prompt", None) or "lagent")
    print_steps(ag.run_stream(question))
    return 0
