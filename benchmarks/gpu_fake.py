#!/usr/bin/env python3
"""The rehearsal's one seam: the process a camp Job starts becomes a recorded fake of the CUDA tool it names.

benchmarks/gpu_check.py --rehearse runs every step of the GPU check on a CPU. camp's functions run for real —
camp.serve plans LMDeploy's memory and writes its command line, camp.finetune plans and writes XTuner's config,
camp.quantize writes its calibration text and launcher, camp.evaluate writes OpenCompass's config — and only when a
Job starts its process does this module stand in for the tool (`install()` wraps the Popen of
camp.runtime.jobs alone; other subprocesses are untouched). The fake, run as `gpu_fake.py EXE ARGS…`, does what
the tool would leave behind for camp to check (a server answering the OpenAI API, iter_50.pth and XTuner's log
lines, an AWQ config.json, OpenCompass's predictions and summary CSV, the probe's JSON) with RECORDED numbers:
they are fakes, and gpu_check's report says so. Every call is appended to $CAMP_GPU_FAKE_LOG (JSON lines: argv,
cwd) so the tests can read the exact command lines.

`prepare()` (in gpu_check's parent) registers stand-in tool envs for those this machine lacks (lmdeploy always on a
CPU): a prefix whose bin/python runs this interpreter with stub packages, so camp's env checks pass.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
# Recorded fakes (not measurements): round numbers of the right order for an H200, so the report's arithmetic runs.
FAKE = {
    "bandwidth_gbs": 4300.0,
    "serve_token_delay_s": 0.001,
    "xtuner_memory_mib": {"qlora": 5200, "lora": 9100},
    "torch_peak_mib": {"qlora": 5260, "lora": 9180},
    "hf_tokens_per_s": 40.0,
}


# ================================================================================ in gpu_check: the seam
def prepare(out: Path, log=print, *, build_envs: bool = False) -> None:
    """Stand-in envs for the tools this machine lacks, and the call log's path (inherited by every child).
    build_envs: no stand-ins; camp's env code builds the envs itself, its pip faked here (`pip()`)."""
    from camp.runtime import envs

    os.environ["CAMP_GPU_FAKE_LOG"] = str(Path(out) / "fake_calls.jsonl")
    if build_envs:
        install(out)  # the parent's Jobs are the pip installs
        return
    for name, module in (("lmdeploy", "lmdeploy"), ("xtuner", "xtuner"), ("opencompass", "opencompass")):
        try:
            envs.python(name)
            if name != "lmdeploy":
                continue  # a real env is there: its python answers camp's look-ups (the tools are still faked)
        except Exception:  # noqa: BLE001 - missing: make a stand-in
            pass
        prefix = Path(out) / "fake-envs" / name
        site = prefix / "site"
        (site / module / "tools").mkdir(parents=True, exist_ok=True)
        (site / module / "__init__.py").write_text('"""gpu_fake stand-in: never imported for real."""\n')
        (site / module / "tools" / "train.py").write_text("raise SystemExit('gpu_fake stand-in')\n")
        (prefix / "bin").mkdir(parents=True, exist_ok=True)
        py = prefix / "bin" / "python"
        py.write_text(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
        py.chmod(0o755)
        for exe in ("lmdeploy", "xtuner"):
            f = prefix / "bin" / exe
            f.write_text("#!/bin/sh\necho 'gpu_fake stand-in: started outside a camp Job' >&2\nexit 3\n")
            f.chmod(0o755)
        reg_path = envs._registry_path()
        reg = envs._registry()
        reg[name] = str(prefix)
        reg_path.parent.mkdir(parents=True, exist_ok=True)
        reg_path.write_text(json.dumps(reg, indent=2))
        log(f"rehearsal: env {name} is a stand-in at {prefix}")


class _SubprocessWithFakeTools:
    """camp.runtime.jobs's view of the subprocess module: Popen of a Job runs this file in front of the tool."""

    def __init__(self, real, guard: str):
        self._real, self._guard = real, guard

    def __getattr__(self, name):
        return getattr(self._real, name)

    def Popen(self, args, *a, **kw):  # noqa: N802 - the name it replaces
        args = list(args)
        if len(args) > 3 and args[2] == self._guard:
            args = [*args[:3], sys.executable, "-I", str(HERE), *args[3:]]  # -I: no start-up hooks
        return self._real.Popen(args, *a, **kw)


def install(out: Path) -> None:
    """In gpu_check's child: every Job's process becomes this fake (the seam), nothing else changes."""
    import subprocess

    from camp.runtime import jobs

    jobs.subprocess = _SubprocessWithFakeTools(subprocess, str(jobs.GUARD))


# ================================================================================ the fake tools
def _opt(args: list[str], name: str, default=None):
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else default


def _log_call(argv: list[str]) -> None:
    path = os.environ.get("CAMP_GPU_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "time": time.time()}) + "\n")


def _safetensors(path: Path) -> None:
    header = json.dumps({"__metadata__": {"format": "pt", "fake": "gpu_fake"}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def serve(args: list[str]) -> int:
    """`lmdeploy serve api_server MODEL …`: an OpenAI-compatible server on the asked port, streaming fake text."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, port = _opt(args, "--server-name", "127.0.0.1"), int(_opt(args, "--server-port", "23333"))
    name = _opt(args, "--model-name", Path(args[1]).name)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _json(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/") == "/health":
                return self._json(200, {"status": "ok"})
            if self.path.rstrip("/") == "/v1/models":
                return self._json(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            return self._json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if req.get("model") != name:
                return self._json(404, {"error": {"message": f"model {req.get('model')!r} not served"}})
            n = int(req.get("max_tokens") or 16)
            if not req.get("stream"):
                return self._json(200, {"id": "fake", "object": "chat.completion", "model": name, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "A " * n}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()

            def chunk(obj):
                self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                self.wfile.flush()

            for _ in range(n):
                time.sleep(FAKE["serve_token_delay_s"])
                chunk({"id": "fake", "object": "chat.completion.chunk", "model": name,
                       "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
            chunk({"id": "fake", "object": "chat.completion.chunk", "model": name, "choices": [],
                   "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    server = ThreadingHTTPServer((host, port), H)
    print(f"INFO:     Uvicorn running on http://{host}:{port} (gpu_fake: recorded LMDeploy)", flush=True)
    server.serve_forever()
    return 0


def awq(args: list[str]) -> int:
    """`lmdeploy lite auto_awq MODEL … --work-dir OUT` (through camp's launcher): an AWQ-shaped output folder."""
    i = args.index("auto_awq")
    model, out = Path(args[i + 1]), Path(_opt(args, "--work-dir"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((model / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": int(_opt(args, "--w-group-size",
                                                                                          "128")),
                                  "version": "gemm", "zero_point": True}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in model.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("generation_config.json", "special_tokens_map.json"):
            (out / f.name).write_bytes(f.read_bytes())
    _safetensors(out / "model.safetensors")
    print(f"[gpu_fake] auto_awq {model} -> {out}", flush=True)
    return 0


def train(args: list[str]) -> int:
    """xtuner/tools/train.py CONFIG --work-dir W: XTuner's log lines (with `memory:`), iter_N.pth, last_checkpoint."""
    config = Path(args[1])
    work = Path(_opt(args, "--work-dir"))
    work.mkdir(parents=True, exist_ok=True)
    text = config.read_text(encoding="utf-8")
    n = int(re.search(r"^max_iters\s*=\s*(\d+)", text, re.M).group(1))
    method = "qlora" if "load_in_4bit" in text else "lora"
    mem = FAKE["xtuner_memory_mib"][method]
    stamp = time.strftime("%m/%d %H:%M:%S")
    for it in range(10, n + 1, 10):
        print(f"{stamp} - mmengine - INFO - Iter(train) [{it:>3}/{n}]  lr: 2.0000e-04  eta: 0:00:01  time: 0.1000  "
              f"data_time: 0.0100  memory: {mem - 200 + it}  loss: {2.0 - it / n:.4f}", flush=True)
    ck = work / f"iter_{n}.pth"
    ck.write_bytes(b"gpu_fake checkpoint")
    (work / "last_checkpoint").write_text(str(ck))
    peak = os.environ.get("CAMP_CUDA_PEAK_FILE")
    if peak:  # what xtuner_compat's start-up hook writes at exit on a GPU
        Path(peak).write_text(json.dumps({"max_allocated_mib": FAKE["torch_peak_mib"][method],
                                          "max_reserved_mib": FAKE["torch_peak_mib"][method] + 600}))
    print(f"{stamp} - mmengine - INFO - Saving checkpoint at {n} iterations", flush=True)
    return 0


def xtuner_convert(args: list[str]) -> int:
    if args[1] == "pth_to_hf":
        out = Path(args[4])
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64, "fake": "gpu_fake"}))
        _safetensors(out / "adapter_model.safetensors")
        return 0
    if args[1] == "merge":
        base, out = Path(args[2]), Path(args[4])
        out.mkdir(parents=True, exist_ok=True)
        for f in base.iterdir():
            if f.suffix == ".json" or f.name.startswith("tokenizer"):
                (out / f.name).write_bytes(f.read_bytes())
        _safetensors(out / "model.safetensors")
        return 0
    print(f"gpu_fake: no recording for xtuner {' '.join(args[1:])}", file=sys.stderr)
    return 3


def opencompass(args: list[str]) -> int:
    """`python -m opencompass.cli.main CONFIG -w WORK`: predictions and a summary CSV for every model × dataset."""
    config = Path(args[args.index("opencompass.cli.main") + 1])
    work = Path(_opt(args, "-w"))
    text = config.read_text(encoding="utf-8")
    models_part, _, datasets_part = text.partition("datasets = [")
    models = re.findall(r"abbr='([^']+)'", models_part.split("models = [", 1)[-1])
    datasets = re.findall(r"abbr='([^']+)'", datasets_part)
    ts = time.strftime("%Y%m%d_%H%M%S")
    exp = work / ts
    (exp / "summary").mkdir(parents=True, exist_ok=True)
    for m in models:
        (exp / "predictions" / m).mkdir(parents=True, exist_ok=True)
        for d in datasets:
            (exp / "predictions" / m / f"{d}.json").write_text(json.dumps(
                {"0": {"origin_prompt": "fake", "prediction": "A", "gold": "B"}}))
    rows = ["dataset,version,metric,mode," + ",".join(models)]
    rows += [f"{d},fake00,accuracy,gen," + ",".join("25.00" for _ in models) for d in datasets]
    (exp / "summary" / f"summary_{ts}.csv").write_text("\n".join(rows) + "\n")
    print(f"[gpu_fake] opencompass {config} -> {exp}", flush=True)
    return 0


def pip(argv: list[str]) -> int:
    """`ENV/bin/python -m pip install [--no-deps] [REQ…] [-r FILE…]`: each requirement becomes an empty importable
    package with its dist-info in the env (so camp's smoke import and version query run), nothing is downloaded."""
    env = Path(argv[0]).absolute().parent.parent  # not resolve(): the venv's python is a symlink
    if env.name in (os.environ.get("CAMP_GPU_FAKE_PIP_FAIL") or "").split(","):  # a machine without the wheels
        print(f"ERROR: No matching distribution found for {env.name}", flush=True)
        return 1
    site = next(env.glob("lib/python*/site-packages"))
    args = argv[argv.index("install") + 1:]
    reqs: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "-r":
            reqs += [ln.split("#")[0].split(";")[0].strip() for ln in Path(args[i + 1]).read_text().splitlines()]
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            reqs.append(args[i])
            i += 1
    for req in filter(None, reqs):
        m = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:==\s*([^\s,]+))?", req)
        name, version = m.group(1), m.group(2) or "0"
        module = name.lower().replace("-", "_")
        (site / module).mkdir(exist_ok=True)
        (site / module / "__init__.py").write_text(f'"""gpu_fake stand-in for {req}"""\n')
        info = site / f"{module}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        print(f"Collecting {req}", flush=True)
    print(f"Successfully installed {len(reqs)} packages (gpu_fake stand-ins)", flush=True)
    return 0


def probe(args: list[str]) -> int:
    mode, out = args[1], Path(_opt(args, "--out"))
    if mode == "machine":
        data = {"device": "NVIDIA H200 (gpu_fake)", "torch": "fake", "cuda": "fake",
                "bandwidth_gbs": FAKE["bandwidth_gbs"], "bandwidth_how": "recorded fake"}
    else:
        mt = int(_opt(args, "--max-tokens", "128"))
        tps = FAKE["hf_tokens_per_s"]
        rows = []
        for c in (int(x) for x in _opt(args, "--levels", "1").split(",")):
            n = max(4, c)
            lat = mt / tps
            rows.append({"concurrency": c, "requests": n, "errors": 0, "seconds": n * lat, "output_tokens": n * mt,
                         "tokens_per_s": tps, "requests_per_s": 1 / lat, "ttft_p50_s": 0.03,
                         "ttft_p90_s": 0.03 + (c - 1) * lat, "latency_p50_s": lat + 0.03 + (c - 1) * lat / 2,
                         "latency_p90_s": lat * c, "latency_p99_s": lat * c})
        data = {"device": "cuda (gpu_fake)", "dtype": "bfloat16", "bench": rows, "max_allocated_mib": 4200}
    out.write_text(json.dumps(data, indent=1))
    return 0


def main(argv: list[str]) -> int:
    _log_call(argv)
    # CAMP_GPU_FAKE_DELAY=S: the tool takes S seconds before it does anything (the budget tests' slow tool)
    time.sleep(float(os.environ.get("CAMP_GPU_FAKE_DELAY") or 0))
    exe, args = Path(argv[0]).name, argv[1:]
    joined = " ".join(argv)
    if exe == "lmdeploy" and args[:2] == ["serve", "api_server"]:
        return serve(args[1:])
    if any(a.endswith("camp_lmdeploy.py") for a in args) and "auto_awq" in args:
        return awq(args)
    if any(a.endswith("tools/train.py") for a in args):
        return train(args[[i for i, a in enumerate(args) if a.endswith("tools/train.py")][0]:])
    if exe == "xtuner" and args and args[0] == "convert":
        return xtuner_convert(args)
    if "opencompass.cli.main" in args:
        return opencompass(args)
    if args and args[0].endswith("gpu_probe.py"):
        return probe(args)
    if args[:3] == ["-m", "pip", "install"]:
        return pip(argv)
    print(f"gpu_fake: no recording for {joined}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
