"""The one client for OpenAI-compatible endpoints: chat, bench, evaluation's checks, serving readiness and agents all
talk to servers through it.

Proxies: dev machines in the camp set `http_proxy`/`https_proxy`, often without `no_proxy`. httpx, requests, urllib
and the openai SDK all send every request to that proxy by default — also one for 127.0.0.1, which the proxy cannot
reach. This client reaches local endpoints (127.0.0.1, localhost, ::1, 0.0.0.0 and this machine's own name) directly,
ignoring the proxy variables, and honours them for remote endpoints.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import urlsplit

from camp.runtime.errors import CampError

LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "[::1]", ""}
DEFAULT_MAX_TOKENS = 256
_SAMPLING = ("temperature", "top_p", "stop", "seed", "n", "presence_penalty", "frequency_penalty")


@lru_cache(maxsize=1)
def _own_names() -> frozenset:
    names = {socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:
        pass
    return frozenset(n.lower() for n in names if n)


def is_local(url: str) -> bool:
    """Does `url` point at this machine (so it must never go through a proxy)?"""
    host = (urlsplit(url if "://" in url else f"http://{url}").hostname or "").lower()
    return host in LOCAL_NAMES or host.startswith("127.") or host in _own_names()


def parse_url(url: str) -> tuple[str, str | None]:
    """'http://127.0.0.1:23333/v1#internlm2_5-7b-chat' → ('http://127.0.0.1:23333/v1', 'internlm2_5-7b-chat');
    a URL without a path gets /v1 (LMDeploy, transformers serve and vLLM all answer there)."""
    s = str(url).strip()
    base, _, model = s.partition("#")
    base = base.rstrip("/")
    if not re.match(r"^https?://[^/]+", base):
        raise CampError(f"{url!r} is not an endpoint URL — write it like http://127.0.0.1:23333/v1#model-name")
    if not base.endswith("/v1"):
        base += "/v1"
    return base, (model or None)


def http_client(url: str, timeout: float = 600.0):
    """An httpx.Client for `url`: no proxy for this machine, the environment's proxies for anything else."""
    import httpx

    return httpx.Client(trust_env=not is_local(url), timeout=timeout)


def generation_body(gen: dict) -> tuple[dict, dict]:
    """camp's generation settings → (OpenAI request fields, extra body fields). max_new_tokens → max_tokens (always
    sent: transformers serve defaults to 1024), do_sample=False → temperature 0; top_k, repetition_penalty and the
    like travel as extra fields (LMDeploy reads them)."""
    gen = {k: v for k, v in gen.items() if v is not None}
    body = {"max_tokens": gen.pop("max_tokens", gen.pop("max_new_tokens", DEFAULT_MAX_TOKENS))}
    if gen.pop("do_sample", None) is False:
        gen.setdefault("temperature", 0)
    for k in _SAMPLING:
        if k in gen:
            body[k] = gen.pop(k)
    return body, gen


class Client:
    """One OpenAI-compatible endpoint: `base_url` (ending in /v1), `model` (the name it serves; resolved from
    /v1/models when not given), `api_key`."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 timeout: float = 600.0):
        base, named = parse_url(base_url)
        self.base_url = base
        self.api_key = api_key or None
        self.timeout = timeout
        self._model = model or named
        self._http = None
        self._openai = None

    # ------------------------------------------------------------------ plumbing
    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")]

    @property
    def http(self):
        if self._http is None:
            self._http = http_client(self.base_url, self.timeout)
        return self._http

    @property
    def openai(self):
        """An `openai.OpenAI` client on this endpoint (same proxy rule)."""
        if self._openai is None:
            import openai

            self._openai = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY", max_retries=0,
                                         timeout=self.timeout, http_client=self.http)
        return self._openai

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key or 'EMPTY'}"}

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 5.0):
        """(status, parsed JSON or None) of one request to base_url + path ("/models") or root + path ("/health").
        Status 0 when nothing answers (connection refused, timeout)."""
        import httpx

        url = (self.root if path.startswith("/health") else self.base_url) + path
        try:
            r = self.http.request(method, url, json=body, headers=self._headers(), timeout=timeout)
        except (httpx.TransportError, OSError):
            return 0, None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, None

    def unreachable(self) -> CampError:
        return CampError(f"endpoint {self.base_url} is not reachable — is the server running? Start one with "
                         "`camp serve MODEL` (LMDeploy on GPU, transformers serve on CPU)")

    # ------------------------------------------------------------------ the server
    def healthy(self, timeout: float = 3.0) -> bool:
        """GET /health answers 200 (LMDeploy and camp's transformers engine serve it without a key)."""
        return self.request("GET", "/health", timeout=timeout)[0] == 200

    def models(self, timeout: float = 10.0) -> list[str]:
        status, body = self.request("GET", "/models", timeout=timeout)
        if status == 0:
            raise self.unreachable()
        if status in (401, 403):
            raise CampError(f"{self.base_url}/models: {status} — the server wants an API key (api_key=… / --api-key)")
        if status != 200:
            raise CampError(f"{self.base_url}/models answered {status} — is it an OpenAI-compatible server?")
        try:
            return [m["id"] for m in body.get("data", [])]
        except (AttributeError, KeyError, TypeError) as exc:
            raise CampError(f"{self.base_url}/models returned something that is not a model list: {exc}") from exc

    @property
    def model(self) -> str:
        if not self._model:
            ids = self.models()
            if not ids:
                raise CampError(f"{self.base_url} lists no models — name the one it serves: {self.base_url}#MODEL")
            self._model = ids[0]
        return self._model

    @model.setter
    def model(self, value: str | None) -> None:
        self._model = value

    # ------------------------------------------------------------------ chat
    @staticmethod
    def messages(messages_or_text) -> list[dict]:
        if isinstance(messages_or_text, str):
            return [{"role": "user", "content": messages_or_text}]
        return [dict(m) for m in messages_or_text]

    def _create(self, messages, stream: bool, gen: dict, **extra):
        import openai

        body, more = generation_body(gen)
        try:
            return self.openai.chat.completions.create(model=self.model, messages=self.messages(messages),
                                                       stream=stream, extra_body=more or None, **body, **extra)
        except openai.APIConnectionError as exc:
            raise self.unreachable() from exc
        except openai.AuthenticationError as exc:
            raise CampError(f"{self.base_url} refused the API key ({exc.status_code}) — pass the server's key with "
                            "api_key=… / --api-key") from exc
        except openai.APIStatusError as exc:
            raise CampError(f"{self.base_url} answered {exc.status_code}: {_detail(exc)}") from exc

    def chat(self, messages_or_text, stream: bool = False, **gen):
        """One reply: a str, or (stream=True) an iterator of text pieces. `gen`: max_new_tokens/max_tokens (256),
        temperature, top_p, do_sample, …; a str is one user message."""
        if not stream:
            response = self._create(messages_or_text, False, gen)
            return response.choices[0].message.content or ""
        return self.pieces(self.stream(messages_or_text, **gen))

    def stream(self, messages_or_text, *, usage: bool = False, **gen):
        """The raw streamed chunks (for measuring: time to first token, the server's token usage)."""
        extra = {"stream_options": {"include_usage": True}} if usage else {}
        return self._create(messages_or_text, True, gen, **extra)

    @staticmethod
    def pieces(response) -> Iterator[str]:
        try:
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            response.close()  # a consumer that stops early stops the server's generation

    def wait_ready(self, timeout: float, alive=lambda: True) -> bool:
        """Poll until /health and /models both answer (some servers answer /health before their OpenAI routes).
        False when `alive()` turns false or the time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if self.healthy(timeout=2) and self.request("GET", "/models", timeout=10)[0] == 200:
                return True
            time.sleep(0.25)
        return False

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = self._openai = None

    def __repr__(self) -> str:
        return f"<Client {self.base_url} model={self._model!r}>"


def _detail_of(body) -> str:
    """The error message in an error response's JSON body."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for k in ("detail", "message", "error"):
            if body.get(k):
                return str(body[k])
    return "no details"


def _detail(exc) -> str:
    found = _detail_of(getattr(exc, "body", None))
    return found if found != "no details" else (getattr(exc, "message", None) or str(exc))


def no_proxy_env(environ: dict | None = None) -> dict[str, str]:
    """NO_PROXY/no_proxy that keep a child process (OpenCompass, Lagent's requests) off the proxy for this machine."""
    environ = os.environ if environ is None else environ
    current = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    parts = [p for p in current.split(",") if p.strip()]
    for host in ("127.0.0.1", "localhost", "::1"):
        if host not in parts:
            parts.append(host)
    value = ",".join(parts)
    return {"NO_PROXY": value, "no_proxy": value}

