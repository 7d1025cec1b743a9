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

import os
import re
import sys
import time
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.serving.endpoint import Endpoint, _endpoints, _endpoints_lock, _get, connect_host
from camp.serving.engines import transformers as transformers_engine
from camp.serving.engines.lmdeploy import (
    DEFAULT_PORT,
    LMDEPLOY_VERSION,
    lmdeploy_serve_command,
)
from camp.serving.memory import awq_group_size, parse_quant, plan_serving, read_config
from camp.serving.ports import LOCAL_HOSTS, SSH_HINT, free_port, port_free, port_holder

ENGINES = ("auto", "lmdeploy", "turbomind", "pytorch", "transformers")


# ============================================================================================ serve()
def _profile(profile):
    from camp.runtime import hardware

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
    from camp.runtime import envs

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
    from camp.models.hub import resolve
    from camp.runtime.jobs import Job

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
        env_name = None
        extra = {transformers_engine.FOLDER_ENV: str(folder), transformers_engine.NAME_ENV: name}
        if api_key:
            extra[transformers_engine.KEY_ENV] = api_key
    else:
        from camp.multimodal.serving import lmdeploy_plan  # vision-language: the tower and image tokens count
        from camp.training.plan import arch_from_config

        arch = arch_from_config(folder)
        group = awq_group_size(cfg)
        plan = lmdeploy_plan(model, folder, prof, quant=q, tp=tp) or plan_serving(
            arch, prof, quant=q, tp=tp, model_format="awq" if group else "hf",
            group_size=group or 128)  # before the env: a plan that cannot fit fails fast
        _lmdeploy_env_ready()
        env_name = "lmdeploy"
        extra = {}
    extra.update({"PYTHONPATH": config.pythonpath(), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"})

    last_error = None
    for attempt in range(3):
        p = ports[0] if ports else free_port(host, DEFAULT_PORT if attempt == 0 else DEFAULT_PORT + 17 * attempt)
        if kind == "transformers":
            cmd = transformers_engine.command(folder, p, host, device)
        else:
            from camp.multimodal.serving import lmdeploy_extra

            cmd = lmdeploy_serve_command(folder, prof, q, p, host, api_key, tp, model_name=name,
                                         backend=backend, plan=plan) + lmdeploy_extra(model, folder)
        job = Job(cmd, name=f"serve-{name}", env=env_name, extra_env=extra, kill_on_exit=True)
        job.start()
        ep = Endpoint(f"http://{connect_host(host)}:{p}/v1", name, api_key=api_key, engine=kind, job=job,
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
