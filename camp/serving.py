"""Serving: one OpenAI-compatible endpoint on every machine, and AWQ quantization.

    ep = camp.serve("tiny")              # CPU: `transformers serve`; GPU profiles: LMDeploy api_server
    ep.chat("你是谁？"); ep.chat("hi", stream=True); ep.session().widget(); ep.base_url, ep.model, ep.api_key
    ep.stop()                            # or: with camp.serve(...) as ep: ...
    camp.quantize("internlm2_5-7b-chat") # LMDeploy AWQ W4A16 (CUDA only), calibrated on the kit's own text

Engines. On a GPU profile `engine="auto"` runs `lmdeploy serve api_server` in the lmdeploy env (TurboMind;
`engine="pytorch"` for LMDeploy's PyTorch engine), with tp, `--cache-max-entry-count` and `--quant-policy` from
the memory plan in camp.lmdeploy_cmd. On cpu-tiny it runs `transformers serve MODEL_DIR --device cpu` in the core
env. Both are launched through `python -m camp.serving CMD…` (this module's `__main__`), which
  * stops the server when the process that started it dies, even by SIGKILL (a crashed kernel): it polls its
    parent and takes its process group down — `stop()` and interpreter exit (Job kill_on_exit) cover the rest;
  * for `transformers serve` only, adds what LMDeploy has and it lacks: an API key check (transformers serve has
    none, so a key cannot be passed to it; an ASGI middleware in the same process checks `Authorization: Bearer`
    on every path but /health — no proxy, no unauthenticated port left behind), and a truthful `/v1/models`
    (stock transformers serve lists the models in the HF cache, not the folder it is pinned to).
`transformers serve` quirks the Endpoint hides (FACTS.md): requests must name the pinned folder exactly, so
`Endpoint.model` is that path; `max_tokens` defaults to 1024, so `chat()` always sends one; temperature > 0 is
still greedy unless the model's generation_config samples.

Safety. Servers bind 127.0.0.1 unless `host` says otherwise (then a warning: anyone who reaches the machine can use
the model — set `api_key`). A free port is picked from 23333; an explicit busy port is refused before anything
starts, naming the process that holds it when it can be found (/proc).

A second serve() of the same model (same folder, engine and quant) in the same process returns the running
Endpoint when `reuse=True` (the default) and its port/host/key match what was asked; with `reuse=False`, or when
they differ, it raises CampError naming the running endpoint: two copies of a model on one GPU rarely fit
(LMDeploy reserves most free memory for its KV cache), so camp never starts a duplicate silently.
"""

from __future__ import annotations

import hmac
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from camp.errors import CampError
from camp.lmdeploy_cmd import (
    AWQ_LAUNCHER,
    DEFAULT_PORT,
    LMDEPLOY_VERSION,
    Quant,
    ServePlan,
    auto_awq_command,
    awq_group_size,
    lmdeploy_serve_command,
    parse_quant,
    plan_serving,
    read_config,
    transformers_serve_command,
)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SSH_HINT = "ssh -CNg -L {port}:127.0.0.1:{port} root@ssh.intern-ai.org.cn -p <your ssh port>"
KEY_ENV = "CAMP_SERVE_API_KEY"  # how the key reaches the transformers launcher (not argv: `ps` shows argv)
MODEL_ENV = "CAMP_SERVE_MODEL_ID"
DEFAULT_MAX_TOKENS = 256
ENGINES = ("auto", "lmdeploy", "turbomind", "pytorch", "transformers")

_endpoints: dict[tuple, Endpoint] = {}  # (folder, engine, quant) -> running Endpoint started by this process
_endpoints_lock = threading.Lock()


# ============================================================================================ ports
def port_free(host: str, port: int) -> bool:
    """Can a server bind host:port now? (TIME_WAIT leftovers of old connections do not count as busy.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", start: int = DEFAULT_PORT, tries: int = 200) -> int:
    for port in range(start, start + tries):
        if port_free(host, port):
            return port
    raise CampError(f"no free port in {start}–{start + tries - 1} on {host} — pass port=")


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])  # state 0A = LISTEN
    return inodes


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of the process listening on port, when /proc tells (Linux); else None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    raw = (proc / "cmdline").read_bytes().split(b"\0")
                    cmd = " ".join(a.decode(errors="replace") for a in raw if a)
                    cmd = cmd if len(cmd) <= 160 else cmd[:157] + "…"
                    pid = int(proc.name)
                    for ep in list(_endpoints.values()):
                        if ep.job is not None and _same_group(pid, ep.job.pid):
                            return f"pid {pid}: camp's own server for {ep.model} at {ep.base_url} (ep.stop() frees it)"
                    return f"pid {pid} ({cmd})"
        except OSError:
            continue  # a process that ended meanwhile, or one we may not inspect
    return None


def _same_group(pid: int, leader: int | None) -> bool:
    try:
        return leader is not None and os.getpgid(pid) == leader
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _connect_host(host: str) -> str:
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
        from camp.conversation import chat

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


# ============================================================================================ serve()
def _profile(profile):
    from camp import hardware

    if isinstance(profile, hardware.Profile):
        return profile
    return hardware.profile(profile or "auto")


def _engine(engine: str, prof) -> tuple[str, str | None]:
    """(engine kind, LMDeploy backend) for the engine asked for on this profile."""
    e = (engine or "auto").strip().lower()
    if e not in ENGINES:
        raise CampError(f"unknown engine {engine!r} — choose one of {', '.join(ENGINES)}")
    if e == "auto":
        e = "lmdeploy" if prof.device == "cuda" else "transformers"
    if e == "transformers":
        return "transformers", None
    if prof.device != "cuda":
        raise CampError(f"engine {engine!r} needs LMDeploy, which runs only on CUDA GPUs (LMDeploy {LMDEPLOY_VERSION}:"
                        f" device must be cuda/ascend/maca/camb); profile {prof.name} has none — use "
                        "engine='auto' or 'transformers' to serve on this machine")
    return ("pytorch", "pytorch") if e == "pytorch" else ("turbomind", "turbomind")


def _served_name(model, folder: Path, prof) -> str:
    """The short name LMDeploy serves the model under (--model-name): catalogue name, registered name, folder."""
    from camp import models

    s = os.fspath(model) if isinstance(model, os.PathLike) else str(model or "auto")
    if s.strip().lower() == "auto":
        return prof.default_model
    try:
        return models.get(s).name
    except CampError:
        pass
    if Path(s).expanduser().is_dir():
        return folder.name
    return s


def _launcher() -> list[str]:
    # `python -m camp.serving CMD…`: the parent watch (and for transformers, the key check) around the tool
    return [sys.executable, "-m", "camp.serving"]


def _camp_pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[1])  # so the launcher imports this very camp package
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


_HINTS = [
    (r"out of memory|CUDA error: out of memory|OutOfMemoryError",
     "the GPU ran out of memory: lower the KV cache (quant='kv8' or 'kv4'), serve a 4-bit model "
     "(camp.quantize), or stop other processes on the GPU (nvidia-smi)"),
    (r"[Aa]ddress already in use", "the port was taken meanwhile: leave port= out to pick a free one"),
    (r"No module named '?(\w+)", "a package is missing in the server's environment: {0}"),
    (r"does not appear to have a file named|is not a local folder and is not a valid model identifier",
     "the model folder is incomplete or unreadable"),
]


def _failure(what: str, job) -> str:
    tail = job.tail(15)
    text = "\n".join(tail)
    hints = []
    for pattern, hint in _HINTS:
        m = re.search(pattern, text)
        if m:
            hints.append(hint.format(*m.groups()))
    lines = "\n".join("    " + line for line in tail)
    hint = ("\n  likely: " + "; ".join(hints)) if hints else ""
    return f"{what} — log: {job.log_path}{hint}\n  last lines:\n{lines}"


def _lmdeploy_env_ready() -> None:
    from camp import envs

    try:
        envs.python("lmdeploy")
    except CampError:
        print("camp: creating the lmdeploy environment (once; several minutes) …", file=sys.stderr)
        envs.create("lmdeploy")


def serve(model="auto", *, engine: str = "auto", quant: str | None = None, port: int | None = None,
          host: str = "127.0.0.1", api_key: str | None = None, tp: int | None = None, profile=None,
          timeout: float = 180, reuse: bool = True) -> Endpoint:
    """Serve `model` (catalogue name, registered name, folder, or "auto" = the profile's default) as an
    OpenAI-compatible endpoint and return once it answers (CampError with the log tail if it does not within
    `timeout` s). See the module docstring for engines, safety and reuse."""
    from camp.jobs import Job
    from camp.models import resolve

    prof = _profile(profile)
    kind, backend = _engine(engine, prof)
    q = parse_quant(quant)
    if kind == "transformers" and (q.weights == "awq" or q.kv is not None):
        raise CampError(f"quant={quant!r} needs LMDeploy on a CUDA GPU; `transformers serve` "
                        f"({'CPU' if prof.device != 'cuda' else 'engine transformers'}) serves unquantized models — "
                        "leave quant out")
    host = (host or "127.0.0.1").strip()
    folder = Path(resolve(model, profile=prof))
    cfg = read_config(folder)
    if kind == "transformers" and awq_group_size(cfg):
        raise CampError(f"{folder} holds AWQ 4-bit weights, which only LMDeploy serves (CUDA GPU) — serve the "
                        "unquantized model here")
    if kind == "transformers" and tp not in (None, 1):
        raise CampError(f"tp={tp} is LMDeploy's tensor parallelism; `transformers serve` runs on one device")
    if q.weights == "awq" and not awq_group_size(cfg):
        raise CampError(f"{folder} is not AWQ-quantized: run camp.quantize({str(model)!r}) first (`camp quantize "
                        f"{model}`), then serve the name it registers, e.g. {folder.name}-w4a16")

    key = (str(folder.resolve()), kind, str(q))
    with _endpoints_lock:
        running = _endpoints.get(key)
        if running is not None and running.job is not None and running.job.done:
            del _endpoints[key]
            running = None
    if running is not None:
        same = (port in (None, running.port) and host == running.host and api_key == running.api_key)
        if reuse and same:
            print(f"camp serve: {running.model} is already served by this process at {running.base_url} — "
                  "reusing it", file=sys.stderr)
            return running
        why = ("reuse=False" if not reuse else
               f"it runs with port={running.port}, host={running.host!r} and "
               f"{'an' if running.api_key else 'no'} API key, which differ from what was asked")
        raise CampError(f"{folder.name} is already served by this process at {running.base_url} ({kind}, pid "
                        f"{running.job.pid}); not starting a second copy ({why}) — use that endpoint "
                        "(camp.serve(..., reuse=True) returns it), or stop it first: ep.stop()")

    if host not in LOCAL_HOSTS:
        print(f"camp: warning: the server listens on {host}: anyone who can reach this machine can use the model"
              + ("" if api_key else " (and no api_key is set)")
              + ". Prefer 127.0.0.1 and an ssh port forward.", file=sys.stderr)
    if port is not None:
        if not port_free(host, port):
            holder = port_holder(port)
            raise CampError(f"port {port} on {host} is in use" + (f" by {holder}" if holder else "")
                            + " — stop that server, or leave port out to pick a free one")
        ports = [port]
    else:
        ports = []

    plan = None
    name = _served_name(model, folder, prof)
    if kind == "transformers":
        device = "cuda" if prof.device == "cuda" else "cpu"
        model_id = str(folder)
        env_name = None
        extra = {MODEL_ENV: model_id}
        if api_key:
            extra[KEY_ENV] = api_key
    else:
        from camp.plan import arch_from_config

        arch = arch_from_config(folder)
        group = awq_group_size(cfg)
        plan = plan_serving(arch, prof, quant=q, tp=tp, model_format="awq" if group else "hf",
                            group_size=group or 128)  # before the env: a plan that cannot fit fails fast
        _lmdeploy_env_ready()
        model_id = name
        env_name = "lmdeploy"
        extra = {}
    extra.update({"PYTHONPATH": _camp_pythonpath(), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"})

    last_error = None
    for attempt in range(3):
        p = ports[0] if ports else free_port(host, DEFAULT_PORT if attempt == 0 else DEFAULT_PORT + 17 * attempt)
        if kind == "transformers":
            cmd = transformers_serve_command(folder, p, host, device)
        else:
            cmd = lmdeploy_serve_command(folder, prof, q, p, host, api_key, tp, model_name=name,
                                         backend=backend, plan=plan)
        job = Job(_launcher() + cmd, name=f"serve-{name}", env=env_name, extra_env=extra, kill_on_exit=True)
        job.start()
        ep = Endpoint(f"http://{_connect_host(host)}:{p}/v1", model_id, api_key=api_key, engine=kind, job=job,
                      host=host, port=p, folder=folder, plan=plan, quant=q, registry_key=key)
        try:
            _wait_ready(ep, timeout)
        except KeyboardInterrupt:  # interrupted while loading: leave nothing behind
            ep.stop()
            raise
        except CampError as exc:
            last_error = exc
            busy = any("address already in use" in line.lower() for line in job.tail(30))
            ep.stop()
            if busy and not ports:
                continue  # another program took the port between the check and the bind: next port
            raise
        with _endpoints_lock:
            _endpoints[key] = ep
        print(f"camp serve: {name} ready at {ep.base_url} ({kind}; model name {ep.model!r}; log {job.log_path})",
              file=sys.stderr)
        return ep
    raise last_error  # three ports taken under our feet


def _wait_ready(ep: Endpoint, timeout: float) -> None:
    job = ep.job
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        if job.done:
            raise CampError(_failure(f"the {ep.engine} server exited ({job.status}) before it answered", job))
        if ep.healthy(timeout=2):
            # /health answers before the OpenAI routes on some servers; the model list is the real readiness
            status, _ = _get(ep.base_url + "/models", ep.api_key, timeout=10)
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise CampError(_failure(f"the {ep.engine} server did not answer within {timeout:.0f} s", job))
        time.sleep(0.25)


def endpoints() -> list[Endpoint]:
    """The endpoints this process started and that are still running."""
    with _endpoints_lock:
        return [ep for ep in _endpoints.values() if ep.job is not None and not ep.job.done]


# ============================================================================================ quantize()
def calibration_text() -> str:
    """The kit's calibration text: assets/calibration/*.txt, the course texts, the tiny model's dialogues."""
    from camp import config

    assets = config.assets_dir()
    parts = [f.read_text(encoding="utf-8") for f in sorted((assets / "calibration").glob("*.txt"))]
    parts += [f.read_text(encoding="utf-8") for f in sorted((assets / "corpus").glob("*.md"))]
    dialogues = assets / "tiny" / "dialogues.jsonl"
    if dialogues.is_file():
        for line in dialogues.read_text(encoding="utf-8").splitlines():
            if line.strip():
                msgs = json.loads(line).get("messages", [])
                parts.append("".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs))
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def _awq_outputs_ok(work_dir: Path) -> str | None:
    cfg = read_config(work_dir)
    if not cfg:
        return f"no config.json in {work_dir}"
    if not awq_group_size(cfg):
        return f"{work_dir}/config.json has no AWQ quantization_config"
    if not list(work_dir.glob("*.safetensors")):
        return f"no *.safetensors weights in {work_dir}"
    return None


def quantize(model, method: str = "w4a16", *, name: str | None = None, calib_samples: int = 128,
             calib_seqlen: int = 2048, work_dir=None, profile=None) -> Path:
    """AWQ W4A16 with LMDeploy (`lmdeploy lite auto_awq`) as a Job in the lmdeploy env, calibrated on the kit's
    own text (LMDeploy's hub datasets cannot download offline). Needs a CUDA GPU: refused before anything starts
    otherwise. The result folder is registered as `name` (default `<model>-w4a16`) with model_format awq, so
    `serve(name)` passes `--model-format awq`. Returns the folder."""
    from camp import config, hardware

    if str(method).lower() not in ("w4a16", "awq"):
        raise CampError(f"unknown quantization method {method!r}: LMDeploy's weight quantization here is w4a16 "
                        "(AWQ, 4-bit weights); KV-cache quantization needs no step — serve(quant='kv8')")
    prof = _profile(profile)
    if prof.device != "cuda" or not hardware.detect_gpus():
        raise CampError(
            f"quantization needs a CUDA GPU: LMDeploy {LMDEPLOY_VERSION}'s auto_awq runs the model on the GPU to "
            "calibrate (and LMDeploy does not run on CPU at all) — this machine "
            + ("has no GPU" if not hardware.detect_gpus() else f"uses the CPU profile {prof.name}")
            + ". Run it on a GPU dev machine; the course's CPU path serves the unquantized tiny model.")
    if calib_samples < 1 or calib_seqlen < 16:
        raise CampError("calib_samples must be ≥ 1 and calib_seqlen ≥ 16")
    from camp.jobs import Job, new_run_dir
    from camp.models import resolve

    folder = Path(resolve(model, profile=prof))
    if awq_group_size(read_config(folder)):
        raise CampError(f"{folder} is already AWQ-quantized")
    base = _served_name(model, folder, prof)
    name = name or f"{base}-w4a16"
    out = Path(work_dir).expanduser() if work_dir else config.models_dir() / name
    if out.exists() and _awq_outputs_ok(out) is None:
        print(f"camp quantize: {out} already holds an AWQ model — reusing it (delete it to quantize again)",
              file=sys.stderr)
    else:
        _lmdeploy_env_ready()
        from camp import envs

        run_dir = new_run_dir(f"quantize-{name}")
        calib = run_dir / "calibration.txt"
        calib.write_text(calibration_text(), encoding="utf-8")
        launcher = run_dir / "camp_lmdeploy.py"
        launcher.write_text(AWQ_LAUNCHER, encoding="utf-8")
        cfg = read_config(folder)
        cmd = auto_awq_command(folder, out, calib, calib_samples=calib_samples, calib_seqlen=calib_seqlen,
                               dtype="float16" if prof.dtype == "float16" else None,
                               trust_remote_code=bool(cfg.get("auto_map")))
        job = Job([str(envs.python("lmdeploy")), str(launcher), *cmd[1:]], name=f"quantize-{name}",
                  env="lmdeploy", run_dir=run_dir, expect=lambda j: _awq_outputs_ok(out),
                  extra_env={"HF_HUB_OFFLINE": "1"}, desc=f"AWQ {name}")
        job.run(show=True)
    _register(name, out, base, folder, calib_samples, calib_seqlen)
    return out


def _register(name: str, out: Path, base: str, folder: Path, samples: int, seqlen: int) -> None:
    from camp import models

    register = getattr(models, "register", None)
    meta = {"model_format": "awq", "quant": "w4a16", "base": base, "base_folder": str(folder),
            "w_bits": 4, "w_group_size": 128, "calib_samples": samples, "calib_seqlen": seqlen,
            "calibration": "camp kit text (assets/calibration, assets/corpus, tiny dialogues)"}
    if register is None:
        print(f"camp quantize: camp.models.register is not available in this camp version — serve the folder "
              f"directly: camp.serve({str(out)!r})", file=sys.stderr)
        return
    register(name, out, base=base, meta=meta)


# ============================================================================================ CLI
def cli_serve(args) -> int:
    ep = serve(args.model or "auto", engine=args.engine, quant=args.quant, port=args.port,
               host=args.host or "127.0.0.1", api_key=args.api_key, tp=args.tp, profile=args.profile)
    print(f"camp serve: {ep.base_url}  model: {ep.model}  engine: {ep.engine}")
    if ep.plan:
        print(ep.plan)
    key = f" --api-key {ep.api_key}" if ep.api_key else ""
    print(f"chat:  camp chat --base-url {ep.base_url}{key} {ep.model!r}")
    print(f"bench: camp bench '{ep.base_url}#{ep.model}'{key}")
    if ep.host in LOCAL_HOSTS:
        print(f"from your own computer: {SSH_HINT.format(port=ep.port)}")
    print(f"log: {ep.log_path} — Ctrl-C stops the server", flush=True)
    try:
        while not ep.job.done:
            time.sleep(0.5)
    except KeyboardInterrupt:
        ep.stop()
        print("\ncamp serve: stopped")
        return 0
    print(_failure(f"the server stopped ({ep.job.status})", ep.job), file=sys.stderr)
    return 1


def cli_quantize(args) -> int:
    kwargs = {}
    if args.calib_samples is not None:
        kwargs["calib_samples"] = args.calib_samples
    if args.calib_seqlen is not None:
        kwargs["calib_seqlen"] = args.calib_seqlen
    out = quantize(args.model, args.method, name=args.name, **kwargs)
    print(out)
    return 0


# ============================================================================================ launcher
class _ServeGuard:
    """ASGI middleware around `transformers serve`'s app: API key on everything but /health; /v1/models lists
    the folder the server is pinned to (stock: the HF cache's models, which the pinned server refuses)."""

    def __init__(self, app, key: str | None, model_id: str):
        self.app, self.key, self.model_id = app, key, model_id
        self.created = int(time.time())

    async def _json(self, send, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            path, method = scope.get("path", ""), scope.get("method", "GET")
            if self.key and path != "/health" and method != "OPTIONS":
                auth = dict(scope.get("headers") or []).get(b"authorization", b"")
                if not hmac.compare_digest(auth, f"Bearer {self.key}".encode()):
                    await self._json(send, 401, {"error": {
                        "message": "invalid or missing API key (send Authorization: Bearer <key>)",
                        "type": "invalid_request_error", "code": "invalid_api_key"}})
                    return
            if path.rstrip("/") == "/v1/models" and method == "GET":
                await self._json(send, 200, {"object": "list", "data": [
                    {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "camp"}]})
                return
        await self.app(scope, receive, send)


def _watch_parent() -> None:
    """When the process that started us dies (the kernel crashed, was SIGKILLed), take our process group down."""
    if os.getpgrp() != os.getpid():
        return  # not a group leader (run by hand): killing "our" group could hit a shell's job
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0)):
                    try:
                        os.killpg(0, sig)
                    except ProcessLookupError:
                        return
                    time.sleep(pause)

    threading.Thread(target=loop, name="camp-parent-watch", daemon=True).start()


def _run_transformers(args: list[str]) -> int:
    import uvicorn

    key = os.environ.pop(KEY_ENV, None) or None
    model_id = os.environ.get(MODEL_ENV) or next((a for a in args[1:] if not a.startswith("-")), "")
    original = uvicorn.Config.__init__

    def init(self, app, *a, **kw):
        original(self, _ServeGuard(app, key, model_id), *a, **kw)

    uvicorn.Config.__init__ = init
    sys.argv = ["transformers", *args]
    from transformers.cli.transformers import main

    main()
    return 0


def _supervise(cmd: list[str]) -> int:
    exe = shutil.which(cmd[0]) or cmd[0]
    child = subprocess.Popen([exe, *cmd[1:]])  # same process group: stop() and the parent watch reach it
    # The tool gets the group's SIGTERM/SIGINT itself; we wait for it and pass its exit status on. (Ignored only
    # after the fork: an ignored signal would stay ignored in the child across exec.)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return child.wait()


def _main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m camp.serving transformers serve … | lmdeploy serve …", file=sys.stderr)
        return 2
    _watch_parent()
    if argv[0] == "transformers":
        return _run_transformers(argv[1:])
    return _supervise(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
