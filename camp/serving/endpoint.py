"""An OpenAI-compatible endpoint: a server camp started (with its Job) or one running elsewhere.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from camp.runtime.errors import CampError
from camp.serving.memory import Quant, ServePlan
from camp.serving.ports import LOCAL_HOSTS, SSH_HINT, _group_alive

DEFAULT_MAX_TOKENS = 256


_endpoints: dict[tuple, Endpoint] = {}  # (folder, engine, quant) -> running Endpoint started by this process
_endpoints_lock = threading.Lock()


# ============================================================================================ HTTP helpers
def _get(url: str, api_key: str | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def parse_endpoint_url(url: str) -> tuple[str, str | None]:
    """'http://127.0.0.1:23333/v1#internlm2_5-7b-chat' → (base URL ending in /v1, model name or None)."""
    s = str(url).strip()
    base, _, model = s.partition("#")
    base = base.rstrip("/")
    if not re.match(r"^https?://[^/]+", base):
        raise CampError(f"{url!r} is not an endpoint URL — write it like http://127.0.0.1:23333/v1#model-name")
    if not base.endswith("/v1"):
        base += "/v1"
    return base, (model or None)


def connect_host(host: str) -> str:
    if host in ("0.0.0.0", "", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# ============================================================================================ the endpoint
class Endpoint:
    """A running OpenAI-compatible server: `base_url`, `model` (the name clients must send), `api_key`,
    `engine`, `port`, `host`, `job` (camp.jobs.Job; None for a server camp did not start), `log_path`, `plan`.
    `chat()`, `session()`, `widget()`, `models()`, `healthy()`, `stop()`; a context manager."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, engine: str = "external",
                 job=None, host: str | None = None, port: int | None = None, folder: Path | None = None,
                 plan: ServePlan | None = None, quant: Quant | None = None, registry_key: tuple | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.engine = engine
        self.job = job
        m = re.match(r"^https?://(\[[^\]]+\]|[^:/]+)(?::(\d+))?", self.base_url)
        self.host = host or (m.group(1) if m else "127.0.0.1")
        self.port = port or (int(m.group(2)) if m and m.group(2) else None)
        self.folder = folder
        self.plan = plan
        self.quant = quant
        self._key = registry_key
        self._client = None

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None, model: str | None = None) -> Endpoint:
        """An Endpoint for a server started elsewhere ('http://host:port/v1#model'; no model: its first
        /v1/models entry). `stop()` is not available on it."""
        base, named = parse_endpoint_url(url)
        ep = cls(base, model or named or "", api_key=api_key)
        if not ep.model:
            ids = ep.models()
            if not ids:
                raise CampError(f"{base}/models lists no model — name it: {base}#MODEL")
            ep.model = ids[0]
        return ep

    # ------------------------------------------------------------------ state
    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    @property
    def log_path(self) -> Path | None:
        return self.job.log_path if self.job is not None else None

    @property
    def running(self) -> bool:
        return self.healthy() if self.job is None else not self.job.done

    def healthy(self, timeout: float = 3.0) -> bool:
        """GET /health answers 200 (both servers serve it without a key)."""
        return _get(self.root + "/health", timeout=timeout)[0] == 200

    def models(self) -> list[str]:
        """The model ids GET /v1/models lists."""
        status, body = _get(self.base_url + "/models", self.api_key, timeout=10)
        if status == 401:
            raise CampError(f"{self.base_url}/models: 401 — the server wants an API key (api_key=…)")
        if status != 200:
            raise CampError(f"{self.base_url}/models answered {status or 'nothing'} — is the server running?")
        try:
            return [m["id"] for m in json.loads(body).get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CampError(f"{self.base_url}/models returned something that is not a model list: {exc}") from exc

    # ------------------------------------------------------------------ clients
    @property
    def client(self):
        """An `openai.OpenAI` client for this endpoint."""
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise CampError("the openai package is missing from this environment") from exc
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY",
                                         max_retries=0, timeout=600)
        return self._client

    @staticmethod
    def _body(gen: dict) -> tuple[dict, dict]:
        gen = {k: v for k, v in gen.items() if v is not None}
        body = {"max_tokens": gen.pop("max_tokens", gen.pop("max_new_tokens", DEFAULT_MAX_TOKENS))}
        if gen.pop("do_sample", None) is False:
            gen["temperature"] = 0
        for k in ("temperature", "top_p", "stop", "seed", "n", "presence_penalty", "frequency_penalty"):
            if k in gen:
                body[k] = gen.pop(k)
        return body, gen  # the rest (top_k, repetition_penalty, …) travels in the request body as extra fields

    def chat(self, messages_or_text, stream: bool = False, **gen):
        """One reply through the openai SDK: a str, or (stream=True) an iterator of text pieces. `gen`:
        max_tokens/max_new_tokens (default 256), temperature, top_p, …; a str is one user message."""
        if isinstance(messages_or_text, str):
            messages = [{"role": "user", "content": messages_or_text}]
        else:
            messages = [dict(m) for m in messages_or_text]
        body, extra = self._body(gen)
        import openai

        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages, stream=stream,
                                                           extra_body=extra or None, **body)
        except openai.APIConnectionError as exc:
            raise CampError(f"cannot reach {self.base_url} — {self._state()}") from exc
        except openai.APIStatusError as exc:
            raise CampError(f"{self.base_url} answered {exc.status_code}: {exc.message}") from exc
        if not stream:
            return response.choices[0].message.content or ""
        return self._pieces(response)

    @staticmethod
    def _pieces(response):
        try:
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            response.close()  # a consumer that stops early stops the server's generation

    def session(self, system: str | None = None, **gen):
        """A camp.conversation.ChatSession over this endpoint (history, streaming, `.widget()`)."""
        from camp.conversation.session import chat

        return chat(self.model, base_url=self.base_url, api_key=self.api_key or "EMPTY", system=system, **gen)

    def widget(self, system: str | None = None, **gen):
        """The JupyterLab chat widget on a new session over this endpoint."""
        return self.session(system=system, **gen).widget()

    # ------------------------------------------------------------------ lifecycle
    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every process it started (its process group); frees the port."""
        if self.job is None:
            raise CampError(f"{self.base_url} was not started by camp in this process — stop it where it runs")
        pgid = self.job.pid
        self.job.cancel(grace=5)
        deadline = time.monotonic() + timeout
        while pgid and _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pgid and _group_alive(pgid):  # a child that ignored SIGTERM outlived the leader
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with _endpoints_lock:
            if self._key is not None and _endpoints.get(self._key) is self:
                del _endpoints[self._key]

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc) -> None:
        if self.job is not None:
            self.stop()

    def _state(self) -> str:
        if self.job is None:
            return "is the server running?"
        if self.job.done:
            return f"its server {self.job.status} (log: {self.log_path})"
        return f"its server is running (log: {self.log_path})"

    # ------------------------------------------------------------------ views
    def commands(self):
        """The server's command line (LMDeploy `api_server` on GPU; on CPU camp's wrapper around `transformers
        serve`) and the same server as the tool's own CLI, to start by hand (camp.runtime.toolcmd)."""
        from camp.runtime.toolcmd import Commands, ToolCommand

        if self.job is None:
            return Commands()
        argv = [str(a) for a in self.job.cmd]
        extra = {k: ("***" if "KEY" in k.upper() else v) for k, v in self.job.extra_env.items()}
        c = ToolCommand(step="serve", env=self.job.env, argv=argv, cwd=None, status=self.job.status,
                        extra_env=extra)
        if self.engine == "transformers" and self.folder is not None:
            from camp.serving.engines import transformers as engine

            c.tool_argv = engine.tool_command(self.folder, self.port or 8000, self.host, argv[argv.index("--device") + 1]
                                              if "--device" in argv else "cpu")
            c.extra_env = {}  # the stock CLI takes the folder itself as the model name and has no key
        return Commands([c])

    def to_dict(self) -> dict:
        """What a client (OpenCompass OpenAISDK, Lagent GPTAPI, camp.chat) needs, plus the server's state."""
        return {"base_url": self.base_url, "model": self.model, "api_key": self.api_key, "engine": self.engine,
                "host": self.host, "port": self.port, "folder": str(self.folder) if self.folder else None,
                "quant": str(self.quant) if self.quant else None,
                "pid": self.job.pid if self.job is not None else None,
                "status": self.job.status if self.job is not None else "external",
                "log": str(self.log_path) if self.log_path else None,
                "plan": self.plan.to_dict() if self.plan else None}

    def __repr__(self) -> str:
        state = self.job.status if self.job is not None else "external"
        key = ", api_key=***" if self.api_key else ""
        return f"<Endpoint {self.base_url} model={self.model!r} engine={self.engine} {state}{key}>"

    def _repr_html_(self) -> str:
        state = self.job.status if self.job is not None else "external"
        key = repr(self.api_key) if self.api_key else '"EMPTY"'
        code = (f"from openai import OpenAI\nclient = OpenAI(base_url={self.base_url!r}, api_key={key})\n"
                f"client.chat.completions.create(model={self.model!r},\n"
                "    messages=[{'role': 'user', 'content': '你好'}], max_tokens=256)")
        rows = [("base_url", self.base_url), ("model", self.model), ("engine", self.engine), ("state", state),
                ("API key", "required" if self.api_key else "none")]
        if self.plan:
            rows.append(("plan", f"tp={self.plan.tp}, --cache-max-entry-count {self.plan.cache_max_entry_count:g}, "
                                 f"--quant-policy {self.plan.quant_policy}, {self.plan.model_format} weights"))
        if self.log_path:
            rows.append(("log", str(self.log_path)))
        table = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td><code>{html.escape(str(v))}</code></td></tr>"
                        for k, v in rows)
        hint = ""
        if self.host in LOCAL_HOSTS and self.port:
            hint = (f"<small>From your own computer: <code>{html.escape(SSH_HINT.format(port=self.port))}</code>"
                    "</small>")
        return (f"<div><b>camp endpoint</b><table>{table}</table><pre>{html.escape(code)}</pre>{hint}"
                "<br><small><code>.chat(text)</code> · <code>.chat(text, stream=True)</code> · "
                "<code>.session()</code> · <code>.widget()</code> · <code>.stop()</code></small></div>")


def endpoints() -> list[Endpoint]:
    """The endpoints this process started and that are still running."""
    with _endpoints_lock:
        return [ep for ep in _endpoints.values() if ep.job is not None and not ep.job.done]
