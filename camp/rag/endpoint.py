"""A knowledge base served as an OpenAI-compatible endpoint: retrieve → prompt → the model's endpoint.

    ep = camp.rag.serve(kb, model_endpoint)     # an Endpoint, like camp.serve's: .chat(), .widget(), .stop()
    ep.chat("LMDeploy 默认用哪个端口？")          # the answer, then a line with its sources

Every client that speaks the OpenAI chat API — the chat widget, the web demo, `camp eval` (OpenCompass OpenAISDK),
Lagent agents, the openai SDK — gets a RAG assistant without knowing it: the server takes the last user message as
the query, puts the retrieved passages in front of it (camp.rag.kb.prompt_messages, the layout the RAG traces teach),
forwards the conversation to the model's endpoint through camp.serving.client.Client, and returns the reply with its
sources: in the text as a last line (`cite=True`, what a person reads in a chat) and always as a `sources` field of
the response (what a program reads).

The server is `python -m camp.rag.endpoint …`, a Job like every server camp starts (it dies with its starter). It
binds 127.0.0.1 unless asked otherwise; with `api_key` it checks `Authorization: Bearer` on every path but /health.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.runtime.stage import Step, run_step

DEFAULT_PORT = 8600


# ============================================================================================ the model to ask
def upstream_client(model):
    """A camp.serving.client.Client for `model`: a Client, an Endpoint, an endpoint URL ('http://…/v1#name'), or a
    model name camp serves (camp.serve: transformers on CPU, LMDeploy on GPU)."""
    from camp.serving.client import Client

    if model is None:
        raise CampError("which model should answer? Pass model= an endpoint (camp.serve(...)), an endpoint URL "
                        "http://127.0.0.1:PORT/v1#model, or a model name")
    if isinstance(model, Client):
        return model
    if hasattr(model, "base_url") and hasattr(model, "model"):  # a camp Endpoint (or anything shaped like one)
        return Client(model.base_url, model.model, getattr(model, "api_key", None))
    s = str(model)
    if s.startswith(("http://", "https://")):
        return Client(s)
    from camp.serving.stage import serve

    ep = serve(s)
    return Client(ep.base_url, ep.model, ep.api_key)


# ============================================================================================ the server
def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


class RagServer:
    """What the HTTP handler calls: retrieval + the upstream model."""

    def __init__(self, kb, upstream, *, name: str, k: int, mode: str, cite: bool, api_key: str | None):
        self.kb, self.upstream, self.name = kb, upstream, name
        self.k, self.mode, self.cite, self.api_key = k, mode, cite, api_key

    def build(self, body: dict) -> tuple[list[dict], list]:
        """(messages for the model, passages) for a chat request."""
        from camp.rag.kb import SYSTEM, prompt_messages

        msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
        if not users:
            raise ValueError("the request has no user message to answer")
        last = users[-1]
        question = _text_of(msgs[last].get("content")).strip()
        if not question:
            raise ValueError("the last user message is empty")
        hits = self.kb.search(question, self.k, mode=self.mode)
        history = [{"role": m["role"], "content": _text_of(m.get("content"))} for m in msgs[:last]
                   if m.get("role") in ("user", "assistant")]
        system = [m for m in msgs[:last] if m.get("role") == "system"]
        sys_text = _text_of(system[-1].get("content")) if system else SYSTEM
        return [*prompt_messages(question, hits, system=sys_text)[:1], *history,
                *prompt_messages(question, hits, system=None)], list(hits)

    def footer(self, passages) -> str:
        from camp.runtime.i18n import t

        if not self.cite or not passages:
            return ""
        return f"\n\n{t('来源', 'Sources')}: " + "; ".join(dict.fromkeys(p.where for p in passages))

    @staticmethod
    def gen(body: dict) -> dict:
        out = {"max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 256}
        for key in ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"):
            if body.get(key) is not None:
                out[key] = body[key]
        return out


def _handler(rag: RagServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request in the Job's log
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def _send(self, status: int, obj) -> None:
            data = json.dumps(obj, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

        def _authorized(self) -> bool:
            if not rag.api_key:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {rag.api_key}":
                return True
            self._error(401, "invalid API key")
            return False

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/health":
                return self._send(200, {"status": "ok", "knowledge_base": rag.kb.name, "passages": len(rag.kb)})
            if not self._authorized():
                return None
            if path == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": rag.name, "object": "model", "created": 0, "owned_by": "camp-rag"}]})
            return self._error(404, f"no route {path}")

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            if not self._authorized():
                return None
            if path != "/v1/chat/completions":
                return self._error(404, f"no route {path}")
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                messages, passages = rag.build(body)
            except (ValueError, CampError) as exc:
                return self._error(400, str(exc))
            sources = [p.to_dict() for p in passages]
            rid = f"chatcmpl-rag-{uuid.uuid4().hex[:12]}"
            try:
                if body.get("stream"):
                    return self._stream(rid, messages, passages, sources, body)
                text = rag.upstream.chat(messages, **rag.gen(body))
            except CampError as exc:
                return self._error(502, f"the model's endpoint failed: {exc}")
            return self._send(200, {
                "id": rid, "object": "chat.completion", "created": int(time.time()), "model": rag.name,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text + rag.footer(passages)}}],
                "sources": sources})

        def _chunk(self, rid: str, delta: dict, finish=None, **extra) -> None:
            obj = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": rag.name,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            self.wfile.write(b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n")
            self.wfile.flush()

        def _stream(self, rid, messages, passages, sources, body):
            pieces = rag.upstream.chat(messages, stream=True, **rag.gen(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self._chunk(rid, {"role": "assistant", "content": ""})
                for piece in pieces:
                    self._chunk(rid, {"content": piece})
                foot = rag.footer(passages)
                if foot:
                    self._chunk(rid, {"content": foot})
                self._chunk(rid, {}, "stop", sources=sources)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: stop the model too
                close = getattr(pieces, "close", None)
                if close:
                    close()
            return None

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m camp.rag.endpoint", description="a knowledge base as an "
                                "OpenAI-compatible endpoint in front of a model's endpoint")
    p.add_argument("--kb", required=True, help="the knowledge base's folder or name")
    p.add_argument("--upstream", required=True, help="the model's endpoint: http://127.0.0.1:PORT/v1#model")
    p.add_argument("--upstream-key", default=None)
    p.add_argument("--name", default=None, help="the model name this endpoint serves (default: rag-<kb name>)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--api-key", default=None, help="require this key from clients (env CAMP_RAG_API_KEY)")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "bm25"])
    p.add_argument("--no-cite", action="store_true", help="no sources line in the reply text")
    a = p.parse_args(argv)
    import os

    from camp.rag.kb import load
    from camp.serving.client import Client

    kb = load(a.kb)
    kb.search("warm-up", 1)  # load the embedding and build the indexes before saying we are ready
    upstream = Client(a.upstream, api_key=a.upstream_key or os.environ.get("CAMP_RAG_UPSTREAM_KEY"))
    rag = RagServer(kb, upstream, name=a.name or f"rag-{kb.name}", k=a.k, mode=a.mode, cite=not a.no_cite,
                    api_key=a.api_key or os.environ.get("CAMP_RAG_API_KEY"))
    server = ThreadingHTTPServer((a.host, a.port), _handler(rag))
    server.daemon_threads = True
    print(f"camp rag endpoint: {rag.name} on http://{a.host}:{a.port}/v1 → {upstream.base_url} "
          f"({len(kb)} passages, {kb.embedding})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


# ============================================================================================ serve()
_lock = threading.Lock()


def serve(kb, model, *, name: str | None = None, port: int | None = None, host: str = "127.0.0.1",
          api_key: str | None = None, k: int = 3, mode: str = "hybrid", cite: bool = True, timeout: float = 120.0,
          show=True):
    """Serve knowledge base `kb` (a KnowledgeBase or its name) in front of `model` (see upstream_client) as an
    OpenAI-compatible endpoint; returns a camp Endpoint (`.chat()`, `.session()`, `.widget()`, `.stop()`)."""
    from camp.rag import index as ix
    from camp.rag.kb import KnowledgeBase, load
    from camp.runtime import progress
    from camp.runtime.jobs import new_run_dir
    from camp.serving.endpoint import Endpoint, connect_host
    from camp.serving.ports import LOCAL_HOSTS, free_port, port_free

    kb = kb if isinstance(kb, KnowledgeBase) else load(kb)
    ix.check_mode(mode)
    if not isinstance(k, int) or k < 1:
        raise CampError(f"k must be a whole number ≥ 1, not {k!r}")
    up = upstream_client(model)
    if not up.healthy(timeout=5) and up.request("GET", "/models", timeout=5)[0] != 200:
        raise CampError(f"the model's endpoint {up.base_url} does not answer — start it first (camp.serve(model))")
    served = name or f"rag-{kb.name}"
    if host not in LOCAL_HOSTS:
        print(f"camp: warning: the RAG endpoint listens on {host}: anyone who can reach this machine can use it"
              + ("" if api_key else " (and no api_key is set)"), file=sys.stderr)
    with _lock:
        if port is not None and not port_free(host, port):
            raise CampError(f"port {port} on {host} is in use — leave port out to pick a free one")
        p = port or free_port(host, DEFAULT_PORT)
    cmd = [sys.executable, "-m", "camp.rag.endpoint", "--kb", str(kb.folder), "--upstream",
           f"{up.base_url}#{up.model}", "--name", served, "--host", host, "--port", str(p), "-k", str(k),
           "--mode", mode]
    if not cite:
        cmd.append("--no-cite")
    extra = {"PYTHONPATH": config.pythonpath(), "OMP_NUM_THREADS": "1"}
    if api_key:
        extra["CAMP_RAG_API_KEY"] = api_key
    if up.api_key:
        extra["CAMP_RAG_UPSTREAM_KEY"] = up.api_key
    from camp.serving.client import Client

    probe = Client(f"http://{connect_host(host)}:{p}/v1", served, api_key)
    step = Step(f"rag-serve-{kb.name}", cmd, new_run_dir(f"rag-serve-{kb.name}"), extra_env=extra,
                ready=lambda job: probe.healthy(timeout=2) and probe.request("GET", "/models", timeout=5)[0] == 200,
                timeout=timeout,
                hints=[(r"[Aa]ddress already in use", "the port was taken meanwhile: leave port out")])
    job = run_step(step, progress.get(show))
    job.kill_on_exit = True
    ep = Endpoint(probe.base_url, served, api_key=api_key, engine="camp-rag", job=job, host=host, port=p)
    ep.knowledge_base = kb
    ep.upstream = up
    progress.get(show).say(f"camp rag: {served} ready at {ep.base_url} → {up.base_url} ({up.model})")
    return ep


if __name__ == "__main__":
    sys.exit(main())

