"""Serving: one OpenAI-compatible endpoint on every machine, and AWQ quantization.

    ep = camp.serve("tiny")              # CPU: `transformers serve`; GPU profiles: LMDeploy api_server
    ep.chat("你是谁？"); ep.chat("hi", stream=True); ep.session().widget(); ep.base_url, ep.model, ep.api_key
    ep.stop()                            # or: with camp.serve(...) as ep: ...
    camp.quantize("internlm2_5-7b-chat") # LMDeploy AWQ W4A16 (CUDA only), calibrated on the kit's own text

Engines. On a GPU profile `engine="auto"` runs `lmdeploy serve api_server` in the lmdeploy env (TurboMind;
`engine="pytorch"` for LMDeploy's PyTorch engine), with tp, `--cache-max-entry-count` and `--quant-policy` from
the memory plan in camp.serving.memory. On cpu-tiny it runs `transformers serve MODEL_DIR --device cpu` in the core
env, wrapped by camp.serving.engines.transformers (an API key check, and the short model name). Both run as a Job
under the guard (camp.runtime.guard): the server dies with the process that started it, even by SIGKILL.

The model name. Every engine serves the model under a short name — the catalogue or registered name, or
`model_name=` (`--model-name`, as LMDeploy calls it) — which `/v1/models` lists and clients send, so Lagent's
GPTAPI (its model_type must start with "internlm" or "gpt": pass model_name="internlm2-…" for a tiny model) and
OpenCompass's OpenAISDK work against it as they are.

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
import time
from pathlib import Path

from camp.runtime import config, hardware, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.jobs import new_run_dir
from camp.runtime.stage import Stage, StageError, Step, ensure_env, run_step
from camp.serving import endpoint as endpoints_
from camp.serving.client import Client
from camp.serving.endpoint import Endpoint, connect_host
from camp.serving.engines import transformers as transformers_engine
from camp.serving.engines.lmdeploy import DEFAULT_PORT, LMDEPLOY_VERSION, lmdeploy_serve_command
from camp.serving.memory import awq_group_size, parse_quant, plan_serving, read_config
from camp.serving.ports import LOCAL_HOSTS, SSH_HINT, free_port, port_free, port_holder

ENGINES = ("auto", "lmdeploy", "turbomind", "pytorch", "transformers")
PORT_TRIES = 3  # another program may take a free port between the check and the bind


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




class ServeStage(Stage):
    """`camp.serve`: validate → the engine's env → a server Step that is done once the endpoint answers."""

    name = "serve"

    def __init__(self, model="auto", *, engine: str = "auto", quant: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", api_key: str | None = None, tp: int | None = None, profile=None,
                 timeout: float = 180, reuse: bool = True, model_name: str | None = None):
        self.model, self.engine_asked, self.quant_asked = model, engine, quant
        self.port, self.host, self.api_key, self.tp = port, (host or "127.0.0.1").strip(), api_key, tp
        self.profile, self.timeout, self.reuse, self.model_name = hardware.profile(profile), timeout, reuse, model_name
        self.kind = self.backend = self.folder = self.plan = self.q = self.key = self.running = None

    @property
    def env(self) -> str | None:  # the lmdeploy env on GPUs; transformers serve runs in this interpreter's env
        return None if self.kind == "transformers" else "lmdeploy"

    def validate(self) -> None:
        from camp.models.hub import resolve

        prof = self.profile
        self.kind, self.backend = _engine(self.engine_asked, prof)
        if self.host not in LOCAL_HOSTS:
            progress.current().say(
                f"camp: warning: the server listens on {self.host}: anyone who can reach this machine can use the "
                "model" + ("" if self.api_key else " (and no api_key is set)") + ". Prefer 127.0.0.1 and an ssh "
                "port forward.")
        self.q = q = parse_quant(self.quant_asked)
        if self.kind == "transformers" and (q.weights == "awq" or q.kv is not None):
            raise CampError(f"quant={self.quant_asked!r} needs LMDeploy on a CUDA GPU; `transformers serve` "
                            f"({'CPU' if prof.device != 'cuda' else 'engine transformers'}) serves unquantized "
                            "models — leave quant out")
        if self.kind == "transformers" and self.tp not in (None, 1):
            raise CampError(f"tp={self.tp} is LMDeploy's tensor parallelism; `transformers serve` runs on one device")
        self.folder = folder = Path(resolve(self.model, profile=prof))
        cfg = read_config(folder)
        if self.kind == "transformers" and awq_group_size(cfg):
            raise CampError(f"{folder} holds AWQ 4-bit weights, which only LMDeploy serves (CUDA GPU) — serve the "
                            "unquantized model here")
        if q.weights == "awq" and not awq_group_size(cfg):
            raise CampError(f"{folder} is not AWQ-quantized: run camp.quantize({str(self.model)!r}) first (`camp "
                            f"quantize {self.model}`), then serve the name it registers, e.g. {folder.name}-w4a16")
        self.served = self.model_name or _served_name(self.model, folder, prof)
        if not self.served or any(c.isspace() for c in self.served):
            raise CampError(f"model_name {self.served!r}: give one word, e.g. internlm2-chat-1_8b")
        self.key = (str(folder.resolve()), self.kind, str(q))
        self.running = endpoints_.running(self.key)
        if self.running is not None:
            r = self.running
            same = (self.port in (None, r.port) and self.host == r.host and self.api_key == r.api_key
                    and self.served == r.model)
            if not (self.reuse and same):
                why = ("reuse=False" if not self.reuse else
                       f"it runs with port={r.port}, host={r.host!r}, model name {r.model!r} and "
                       f"{'an' if r.api_key else 'no'} API key, which differ from what was asked")
                raise CampError(f"{folder.name} is already served by this process at {r.base_url} ({self.kind}, "
                                f"pid {r.job.pid}); not starting a second copy ({why}) — use that endpoint "
                                "(camp.serve(..., reuse=True) returns it), or stop it first: ep.stop()")
            return
        if self.port is not None and not port_free(self.host, self.port):
            holder = port_holder(self.port)
            raise CampError(f"port {self.port} on {self.host} is in use" + (f" by {holder}" if holder else "")
                            + " — stop that server, or leave port out to pick a free one")
        if self.kind != "transformers":  # before the env: a plan that cannot fit fails fast
            from camp.multimodal.serving import (
                lmdeploy_plan,  # vision-language: the tower and image tokens count
            )
            from camp.training.plan import arch_from_config

            group = awq_group_size(cfg)
            self.plan = lmdeploy_plan(self.model, folder, prof, quant=q, tp=self.tp) or plan_serving(
                arch_from_config(folder), prof, quant=q, tp=self.tp, model_format="awq" if group else "hf",
                group_size=group or 128)

    def step(self, port: int) -> Step:
        """The server run on `port`: the engine's command, done once /health and /v1/models answer."""
        if self.kind == "transformers":
            device = "cuda" if self.profile.device == "cuda" else "cpu"
            cmd = transformers_engine.command(self.folder, port, self.host, device)
            extra = {transformers_engine.FOLDER_ENV: str(self.folder), transformers_engine.NAME_ENV: self.served}
            if self.api_key:
                extra[transformers_engine.KEY_ENV] = self.api_key
        else:
            from camp.multimodal.serving import lmdeploy_extra

            cmd = lmdeploy_serve_command(self.folder, self.profile, self.q, port, self.host, self.api_key, self.tp,
                                         model_name=self.served, backend=self.backend,
                                         plan=self.plan) + lmdeploy_extra(self.model, self.folder)
            extra = {}
        extra.update({"PYTHONPATH": config.pythonpath(), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"})
        client = Client(f"http://{connect_host(self.host)}:{port}/v1", self.served, self.api_key)

        def ready(job) -> bool:
            # ours, not another server that took the port between the check and the bind: it lists our name
            if not client.healthy(timeout=2):
                return False
            status, body = client.request("GET", "/models", timeout=10)
            ids = [m.get("id") for m in body.get("data", [])] if status == 200 and isinstance(body, dict) else []
            return self.served in ids

        return Step(f"serve {self.served}", cmd, new_run_dir(f"serve-{self.served}"), env=self.env,
                    extra_env=extra, hints=_HINTS, ready=ready, timeout=self.timeout, desc=f"{self.kind} server")

    def run(self, *, run_dir=None, show=True) -> Endpoint:
        view = progress.get(show)
        self.validate()
        if self.running is not None:
            view.say(t(f"camp serve：本进程已在 {self.running.base_url} 提供 {self.running.model}，直接复用",
                       f"camp serve: {self.running.model} is already served by this process at "
                       f"{self.running.base_url} — reusing it"))
            return self.running
        ensure_env(self.env, view)
        for attempt in range(PORT_TRIES):
            port = self.port or free_port(self.host, DEFAULT_PORT + 17 * attempt)
            step = self.step(port)
            try:
                job = run_step(step, view)
            except StageError as exc:
                busy = exc.job is not None and any("address already in use" in ln.lower() for ln in exc.job.tail(30))
                if busy and self.port is None and attempt + 1 < PORT_TRIES:
                    continue  # another program took the port under our feet: the next one
                raise
            ep = Endpoint(f"http://{connect_host(self.host)}:{port}/v1", self.served, api_key=self.api_key,
                          engine=self.kind, job=job, host=self.host, port=port, folder=self.folder, plan=self.plan,
                          quant=self.q, registry_key=self.key)
            endpoints_.register(ep)
            view.say(t(f"camp serve：{self.served} 已就绪 {ep.base_url}（{self.kind}；模型名 {ep.model!r}；日志 "
                       f"{job.log_path}）",
                       f"camp serve: {self.served} ready at {ep.base_url} ({self.kind}; model name {ep.model!r}; "
                       f"log {job.log_path})"))
            return ep
        raise AssertionError("unreachable")


def serve(model="auto", *, engine: str = "auto", quant: str | None = None, port: int | None = None,
          host: str = "127.0.0.1", api_key: str | None = None, tp: int | None = None, profile=None,
          timeout: float = 180, reuse: bool = True, model_name: str | None = None, show=True) -> Endpoint:
    """Serve `model` (catalogue name, registered name, folder, or "auto" = the profile's default) as an
    OpenAI-compatible endpoint under a short name (`model_name`, default the catalogue/registered name) and return
    once it answers (StageError with the cause and the log path if it does not within `timeout` s). See the module
    docstring for engines, safety and reuse."""
    return ServeStage(model, engine=engine, quant=quant, port=port, host=host, api_key=api_key, tp=tp,
                      profile=profile, timeout=timeout, reuse=reuse, model_name=model_name).run(show=show)


# ============================================================================================ CLI
def cli_serve(args) -> int:
    ep = serve(args.model or "auto", engine=args.engine, quant=args.quant, port=args.port,
               host=args.host or "127.0.0.1", api_key=args.api_key, tp=args.tp, profile=args.profile,
               model_name=getattr(args, "model_name", None))
    print(f"camp serve: {ep.base_url}  model: {ep.model}  engine: {ep.engine}")
    if ep.plan:
        print(ep.plan)
    key = f" --api-key {ep.api_key}" if ep.api_key else ""
    print(t("对话", "chat") + f":  camp chat --base-url {ep.base_url}{key} {ep.model!r}")
    print(t("压测", "bench") + f": camp bench '{ep.base_url}#{ep.model}'{key}")
    if ep.host in LOCAL_HOSTS:
        print(t("在你自己的电脑上", "from your own computer") + f": {SSH_HINT.format(port=ep.port)}")
    try:  # the line that says Ctrl-C is printed inside: a Ctrl-C right after it (while print returns) stops cleanly
        print(t(f"日志：{ep.log_path} — Ctrl-C 停止服务", f"log: {ep.log_path} — Ctrl-C stops the server"), flush=True)
        while not ep.job.done:
            time.sleep(0.5)
    except KeyboardInterrupt:
        ep.stop()
        print("\ncamp serve: " + t("已停止", "stopped"))
        return 0
    raise StageError(f"serve {ep.model}", f"the server stopped ({ep.job.status})", ep.job)
