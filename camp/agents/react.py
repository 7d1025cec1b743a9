"""Agents: a Lagent 0.2.4 ReAct loop over a camp Endpoint, with camp's tools.

    ag = camp.agent(endpoint, tools=[camp.agents.calculator(), camp.agents.course_search()])
    reply = ag.chat("What is 37 * 91?")       # AgentReply(answer, steps)
    for step in ag.run_stream("..."): ...      # Steps as they happen
    ag.widget()                                # live JupyterLab view

The loop itself is Lagent's `ReAct.chat`; camp only hooks the model call and the tool executor so every
Thought / Action / Observation reaches the caller as it happens, and replaces Lagent's unhelpful messages for
unknown tools and badly formatted replies with ones that say what went wrong.

`tool(fn)` turns a typed function with a Google-style docstring into a Lagent action. Built-in tools:
`calculator()` (an ast-based arithmetic evaluator: no names, no attributes, no calls), `course_search()` (camp.rag's
hybrid retriever over assets/corpus/*.md) and `python()` (model-written code through camp.sandbox.run_python).

Lagent is imported only when an agent or tool is built: `import camp.agents` stays cheap.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from camp.agents.tools import _lagent, calculator, course_search, default_tools, python
from camp.runtime.errors import CampError

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


# ---------------------------------------------------------------------------------------------- agent
PROMPTS = ("lagent", "short")


def _protocol(L, *, prompt: str, response_role: str, preamble: str | None):
    """Lagent's ReActProtocol with two choices camp's agent fine-tuning needs (see camp.agent_data):
    prompt "short" sends agent_data.SHORT_PROTOCOL's system message instead of Lagent's ~500-token one, and
    the tool's `Response:` goes back as a `response_role` message — "user" by default, because Lagent's
    mid-conversation system message has no place in chat fine-tuning data (XTuner renders it with an extra
    empty user turn), so a model trained on camp's traces would see a layout it never learnt."""
    from camp.agents import traces as agent_data

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
            # Lagent builds the request body (its ReAct prompt, stop words, its generation settings); camp's endpoint
            # client sends it (Lagent posts with `requests`, which sends local traffic to an http_proxy).
            def generate_request_data(self, model_type, messages, gen_params, json_mode=False):
                # top_k is not an OpenAI parameter (Lagent warns on every call)
                gen_params = {k: v for k, v in gen_params.items() if k != "top_k"}
                header, data = super().generate_request_data(model_type, messages, gen_params, json_mode)
                if isinstance(data, dict):
                    # Lagent sends model_type as `model` (it must start with 'gpt' for Lagent to build the body);
                    # the server wants the name it serves
                    data["model"] = served
                    data = {k: v for k, v in data.items() if v is not None}
                    if not data.get("frequency_penalty"):
                        data.pop("frequency_penalty", None)
                return header, data

            def _chat(self, messages, **gen_params):
                _, data = self.generate_request_data(model_type=self.model_type, messages=messages,
                                                     gen_params=gen_params, json_mode=self.json_mode)
                status, body = endpoint.api.request("POST", "/chat/completions", body=data, timeout=600)
                if status == 0:
                    raise CampError(f"the model server {endpoint.base_url} did not answer — is it running? "
                                    "endpoint.healthy()")
                if status >= 400:
                    from camp.serving.client import _detail_of

                    raise CampError(f"the model server {endpoint.base_url} refused the request ({status}: "
                                    f"{_detail_of(body)}) — is {served!r} the name it serves? endpoint.models()")
                try:
                    reply = body["choices"][0]["message"]["content"].strip()
                except (KeyError, IndexError, TypeError):
                    raise CampError(f"the model server {endpoint.base_url} answered without a reply: "
                                    f"{str(body)[:300]}") from None
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
