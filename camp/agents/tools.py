"""Agent tools, as Lagent actions: `tool(fn)` turns a typed function with a Google-style docstring into one;
built in: `calculator()` (an ast-based arithmetic evaluator: no names, no attributes, no calls),
`course_search()` (camp.rag's retriever over assets/corpus/*.md) and `python()` (model-written code through the sandbox).
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path

from camp.runtime.errors import CampError


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
def course_search(folder: Path | str | None = None, k: int = 2):
    """A Lagent action `CourseSearch` over the course's own documents (assets/corpus/*.md), searched by camp.rag's
    hybrid retriever (offline embedding + BM25 over jieba words); `.kb` is the knowledge base."""
    L = _lagent()
    from camp.rag.kb import course_kb

    kb = course_kb(folder)

    def run(self, query: str) -> str:
        """Search the course documents (InternLM, XTuner, LMDeploy, OpenCompass, Lagent, HuixiangDou …).

        Args:
            query (str): keywords to look for

        Returns:
            str: the best matching passages, each with its file and lines
        """
        if not str(query).strip():
            return "the query is empty: give some keywords"
        hits = kb.search(str(query), k=k)
        if not hits:
            return f"no course document matches {query!r}"
        return "\n\n".join(f"[{p.where}] {p.text[:600]}" for p in hits)

    cls = _unique_tool_class(L, "CourseSearch", {"__doc__": "Search the course documents.",
                                                 "run": L["tool_api"](run), "__module__": __name__})
    inst = cls(parser=_lenient_parser(L))
    inst.kb = kb
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
        from camp.agents.sandbox import (
            run_python,  # lazily: the sandbox is only needed when the model writes code
        )

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
