"""An OpenAI-compatible endpoint: a server camp started (with its Job) or one running elsewhere. Every request goes
through camp.serving.client.Client (no proxy for this machine)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from camp.runtime import guard
from camp.runtime.errors import CampError
from camp.serving.client import Client, parse_url
from camp.serving.memory import Quant, ServePlan
from camp.serving.ports import _group_alive

_endpoints: dict[tuple, Endpoint] = {}  # (folder, engine, quant) -> running Endpoint started by this process
_endpoints_lock = threading.Lock()

parse_endpoint_url = parse_url  # the name the CLI and earlier code use


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on `host`."""
    if host in ("0.0.0.0", "", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Endpoint:
    """A running OpenAI-compatible server: `base_url`, `model` (the short name clients send), `api_key`, `engine`,
    `port`, `host`, `job` (camp.runtime.jobs.Job; None for a server camp did not start), `log_path`, `plan`,
    `api` (the camp Client), `client` (an openai.OpenAI on it). `chat()`, `session()`, `widget()`, `models()`,
    `healthy()`, `stop()`; a context manager."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, engine: str = "external",
                 job=None, host: str | None = None, port: int | None = None, folder: Path | None = None,
                 plan: ServePlan | None = None, quant: Quant | None = None, registry_key: tuple | None = None):
        self.api = Client(base_url, model or None, api_key)
        self.base_url = self.api.base_url
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

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None, model: str | None = None) -> Endpoint:
        """An Endpoint for a server started elsewhere ('http://host:port/v1#model'; no model: its first
        /v1/models entry). `stop()` is not available on it."""
        base, named = parse_url(url)
        ep = cls(base, model or named or "", api_key=api_key)
        ep.model  # noqa: B018 - resolve the name now: a wrong URL fails here, not at the first chat
        return ep

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> str:
        return self.api.model

    @model.setter
    def model(self, value: str) -> None:
        self.api.model = value

    @property
    def root(self) -> str:
        return self.api.root

    @property
    def log_path(self) -> Path | None:
        return self.job.log_path if self.job is not None else None

    @property
    def running(self) -> bool:
        return self.healthy() if self.job is None else not self.job.done

    def healthy(self, timeout: float = 3.0) -> bool:
        """GET /health answers 200 (both engines serve it without a key), from the server camp started: once that
        one has stopped, another server that took its freed port (another notebook's, the next free one from
        23333) does not make this endpoint healthy."""
        if self.job is not None and self.job.done:
            return False
        return self.api.healthy(timeout)

    def models(self) -> list[str]:
        """The model ids GET /v1/models lists."""
        return self.api.models()

    @property
    def client(self):
        """An `openai.OpenAI` client for this endpoint (local traffic kept off proxies)."""
        return self.api.openai

    # ------------------------------------------------------------------ talking to it
    def chat(self, messages_or_text, stream: bool = False, **gen):
        """One reply: a str, or (stream=True) an iterator of text pieces. `gen`: max_tokens/max_new_tokens
        (default 256), temperature, top_p, …; a str is one user message."""
        try:
            return self.api.chat(messages_or_text, stream=stream, **gen)
        except CampError as exc:
            if self.job is not None and self.job.done:
                raise CampError(f"{exc} — {self._state()}") from exc
            raise

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
            guard.kill_group(pgid, grace=0)
        self.api.close()
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
        from camp.ui.html import endpoint_html

        return endpoint_html(self)


def register(ep: Endpoint) -> None:
    with _endpoints_lock:
        _endpoints[ep._key] = ep


def running(key: tuple) -> Endpoint | None:
    """The live endpoint this process started for `key`, if any (a finished one is forgotten)."""
    with _endpoints_lock:
        ep = _endpoints.get(key)
        if ep is not None and ep.job is not None and ep.job.done:
            del _endpoints[key]
            ep = None
        return ep


def endpoints() -> list[Endpoint]:
    """The endpoints this process started and that are still running."""
    with _endpoints_lock:
        return [ep for ep in _endpoints.values() if ep.job is not None and not ep.job.done]
