#!/usr/bin/env python3
"""Check a GPU machine: every CUDA path of camp, measured on real model shapes with random weights, in one run.

    python benchmarks/gpu_check.py --out OUT --budget-s 720            # on a GPU machine (benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --out OUT --setup-only              # only the environments, timed
    python benchmarks/gpu_check.py --out OUT --rehearse --scale ci     # the CPU rehearsal (tests/benchmarks)

What it measures, in this order (a step whose estimate no longer fits the budget is skipped with the reason):
  probe          nvidia-smi, torch/CUDA versions, HBM bandwidth (device-to-device copy)
  shapes-1.8b    camp.models.shapes.prepare("internlm2_5-1_8b-chat"): the published architecture, random weights
  lmdeploy-1.8b  camp.serve (LMDeploy TurboMind api_server) + camp.bench at concurrency 1/16/64
  hf-1.8b        camp.bench on the same folder in-process (transformers generate): the baseline LMDeploy beats
  qlora-1.8b     camp.finetune(method="qlora", max_iters=50) with the planner's settings: predicted peak memory vs
  lora-1.8b      …what XTuner logs (`memory:`) and torch.cuda.max_memory_allocated (the same with LoRA)
  kv8-1.8b       camp.serve(quant="kv8") (LMDeploy --quant-policy 8) + camp.bench 1/16/64
  awq-1.8b       camp.quantize (LMDeploy AWQ W4A16, calibrated on the kit's text) + serve the result + bench
  eval-1.8b      camp.evaluate through an LMDeploy endpoint (OpenCompass OpenAISDK) on a course set
  shapes-7b, lmdeploy-7b, hf-7b, qlora-7b   the same for internlm2_5-7b-chat, where time allows
Single-stream decode tokens/s (the concurrency-1 rows) is set against the memory-bandwidth limit: the model's
weight bytes / the measured HBM bandwidth (each token reads every weight once).

Every figure comes from a random-weight checkpoint: "random weights — shapes only" heads the report. Answers
(and so the evaluation's score) are noise; speed and memory are the real model's.

Budget and resume. `--budget-s` covers everything from the start, setup included. Each measurement runs in a child
process (`--child STEP`) with a deadline: a step that overruns is killed (its servers die with it) and recorded as
"cut"; nothing after the budget starts. The plan is redone before every step, so the time of a step that
cannot run (its tool env could not be built) or that ended early goes to steps first left out; while the envs are
being built, steps that need none run first. Each step's state is a JSON file in `<out>/state/` (`--state-dir`), written
as it goes (a bench writes its rows level by level); a rerun with the same folder skips what is done and retries
what failed or was cut (`--resume-from results.json` takes the states of an earlier machine's run). `results.json`
and `results.md` (the table) are rewritten after every step, so a cut-off run still leaves its table.

Setup (reported on its own): the tool environments this run needs (lmdeploy; xtuner and opencompass, their CUDA
variants) are built by camp's env code (`camp.runtime.envs.ensure`, from environments/*.txt; the torch line from
`camp.runtime.envs.torch_requirement`) in parallel threads, while the probe and the first checkpoint build run.
pip reads its sources from the environment: PIP_ONLY_BINARY=:all: (wheels only), PIP_FIND_LINKS / PIP_NO_INDEX for
a carried wheelhouse (gpu_check.sh sets them). A step whose environment could not be built is skipped with why.

The rehearsal (`--rehearse`) runs the very same steps on a CPU: the checkpoints at `--scale ci`, camp's real
functions writing every config and command line, the budget, resume and report — with ONE seam replaced: the
process a camp Job starts (the tool: LMDeploy, XTuner, OpenCompass, the torch probe) is a recorded fake
(benchmarks/gpu_fake.py), and CAMP_FAKE_GPUS describes an H200. Its figures are fakes and the report says so.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
PROBE = HERE / "gpu_probe.py"
NOTE = "random weights — shapes only"
H200 = '[{"name": "NVIDIA H200", "total_mib": 143771, "free_mib": 143000}]'  # the rehearsal's simulated GPU
RESERVE_S = 15  # kept back at the end: writing the report, killing what is left
LEVELS = (1, 16, 64)
HF_LEVELS = (1, 16)  # in-process generate serves one request at a time: 64 would only queue longer
MODELS = {"1.8b": "internlm2_5-1_8b-chat", "7b": "internlm2_5-7b-chat"}


# ================================================================================ the steps
@dataclass(frozen=True)
class Step:
    name: str
    title: str
    kind: str  # probe | shapes | serve | hf | finetune | eval
    size: str | None  # "1.8b" | "7b" | None
    estimate_s: int  # on an H200 at full scale (setup excluded); the ci scale takes ESTIMATE_CI_FRACTION of it
    envs: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @property
    def needs(self) -> tuple[str, ...]:
        """Steps that must be done first (the checkpoint it measures)."""
        return (f"shapes-{self.size}",) if self.size and self.kind != "shapes" else ()


STEPS: tuple[Step, ...] = (
    Step("probe", "GPU, CUDA and HBM bandwidth", "probe", None, 20),
    Step("shapes-1.8b", "build internlm2_5-1_8b-chat (random weights) and normalise it", "shapes", "1.8b", 90),
    Step("lmdeploy-1.8b", "LMDeploy TurboMind serve + bench 1/16/64", "serve", "1.8b", 150, ("lmdeploy",),
         {"engine": "turbomind"}),
    Step("hf-1.8b", "transformers generate (camp.bench in-process) 1/16", "hf", "1.8b", 150),
    Step("qlora-1.8b", "XTuner QLoRA, 50 iterations: planned vs measured memory", "finetune", "1.8b", 200,
         ("xtuner",), {"method": "qlora"}),
    Step("lora-1.8b", "XTuner LoRA, 50 iterations: planned vs measured memory", "finetune", "1.8b", 180,
         ("xtuner",), {"method": "lora"}),
    Step("kv8-1.8b", "LMDeploy --quant-policy 8 (int8 KV cache) serve + bench 1/16/64", "serve", "1.8b", 120,
         ("lmdeploy",), {"engine": "turbomind", "quant": "kv8"}),
    Step("awq-1.8b", "camp.quantize AWQ W4A16, serve the result + bench 1/16/64", "serve", "1.8b", 330,
         ("lmdeploy",), {"engine": "turbomind", "awq": True}),
    Step("eval-1.8b", "OpenCompass through an LMDeploy endpoint on internlm_toolchain_mcq", "eval", "1.8b", 200,
         ("lmdeploy", "opencompass"), {"dataset": "internlm_toolchain_mcq"}),
    Step("shapes-7b", "build internlm2_5-7b-chat (random weights) and normalise it", "shapes", "7b", 240),
    Step("lmdeploy-7b", "LMDeploy TurboMind serve + bench 1/16/64 (7B)", "serve", "7b", 180, ("lmdeploy",),
         {"engine": "turbomind"}),
    Step("hf-7b", "transformers generate single stream (7B)", "hf", "7b", 120, (), {"levels": (1,)}),
    Step("qlora-7b", "XTuner QLoRA, 50 iterations (7B): planned vs measured memory", "finetune", "7b", 300,
         ("xtuner",), {"method": "qlora"}),
)
BY_NAME = {s.name: s for s in STEPS}
ESTIMATE_CI_FRACTION = 0.05


# ================================================================================ small helpers
def now() -> float:
    return time.time()


def read_json(path: Path) -> dict:
    from camp.runtime import markers

    return markers.read_json(path)


def write_json(path: Path, obj) -> None:
    """Atomic (camp.runtime.markers.write_json): a reader, or a cut-off, sees the old file or the new one."""
    from camp.runtime import markers

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    markers.write_json(path, obj)


class Log:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, msg: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# ================================================================================ the plan (budget)
def estimate(step: Step, scale: str) -> float:
    return step.estimate_s * (ESTIMATE_CI_FRACTION if scale == "ci" else 1.0)


def plan(steps: list[Step], states: dict[str, dict], remaining: float, scale: str, only=None, skip=()
         ) -> list[tuple[Step, str | None]]:
    """(step, None) to run, or (step, why not) — in order, each within what is left of the budget once the steps
    before it have run. Done steps are not planned again; a step whose checkpoint step cannot run is skipped."""
    out: list[tuple[Step, str | None]] = []
    left = remaining - RESERVE_S
    runs: set[str] = set()
    for s in steps:
        st = states.get(s.name, {})
        if st.get("status") == "done":
            out.append((s, "done in an earlier run"))
            runs.add(s.name)
            continue
        if only and s.name not in only:
            out.append((s, "not asked for (--only)"))
            continue
        if s.name in skip:
            out.append((s, "left out (--skip)"))
            continue
        blocked = [n for n in s.needs if n not in runs and states.get(n, {}).get("status") != "done"]
        if blocked:
            out.append((s, f"needs {', '.join(blocked)}, which does not run"))
            continue
        est = estimate(s, scale)
        if est > left:
            out.append((s, f"needs ~{est:.0f} s, {max(0, left):.0f} s of the budget left"))
            continue
        left -= est
        runs.add(s.name)
        out.append((s, None))
    return out


# ================================================================================ setup: the environments
class Setup:
    """Builds the tool envs the planned steps need, in parallel threads; records each one's seconds."""

    def __init__(self, names: list[str], log: Log, rehearse: bool):
        self.names = names
        self.log = log
        self.rehearse = rehearse
        self.info: dict[str, dict] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.t0 = now()

    def start(self) -> None:
        from camp.runtime import envs

        for name in self.names:
            info = self.info[name] = {"status": "building", "commands": commands_for_env(name)}
            registered = name in envs._registry()
            info["source"] = "registered (used as it is)" if registered else str(envs.env_path(name))
            t = threading.Thread(target=self._build, args=(name,), name=f"env-{name}", daemon=True)
            self.threads[name] = t
            t.start()

    def _build(self, name: str) -> None:
        from camp.runtime import envs, progress

        t0 = now()
        try:
            py = envs.ensure(name, view=progress.SILENT)
            self.info[name].update(status="ready", python=str(py))
        except Exception as exc:  # noqa: BLE001 - an env that cannot be built is a finding, reported per step
            self.info[name].update(status="failed", error=str(exc).splitlines()[0][:500])
        self.info[name]["seconds"] = round(now() - t0, 1)
        self.log(f"setup: env {name} {self.info[name]['status']} in {self.info[name]['seconds']} s"
                 + (f" — {self.info[name].get('error')}" if self.info[name]["status"] == "failed" else ""))

    def failed(self, name: str) -> bool:
        """True once env `name`'s build has ended without a usable env."""
        return self.built(name) and self.info.get(name, {}).get("status") not in (None, "ready")

    def built(self, name: str) -> bool:
        """True once env `name`'s build has ended (ready or failed)."""
        t = self.threads.get(name)
        return t is None or not t.is_alive()

    def wait(self, names, timeout: float) -> str | None:
        """None when every env in `names` is ready, else why not."""
        for n in names:
            t = self.threads.get(n)
            if t is None:
                return f"env {n} was not planned"
            t.join(max(0.0, timeout))
            if t.is_alive():
                return f"env {n} is still being built after the budget ran out"
            if self.info[n]["status"] != "ready":
                return f"env {n} could not be built: {self.info[n].get('error')}"
        return None

    def summary(self) -> dict:
        done = [i.get("seconds", 0) for i in self.info.values() if "seconds" in i]
        return {"envs": self.info, "seconds_all_envs": max(done) if done else 0.0}


def commands_for_env(name: str) -> list[str]:
    """The pip command lines camp's env code runs for `name` on a CUDA machine (shown in the report)."""
    from camp.runtime import envs

    try:
        torch = envs.torch_requirement(name, "cuda")
    except Exception as exc:  # noqa: BLE001
        return [f"(cannot be built: {exc})"]
    files = envs.requirement_files(name)
    cmds = [f"python -m venv {envs.env_path(name)}",
            shlex.join(["pip", "install", *torch, "-r", str(files[0].relative_to(ROOT))])]
    cmds += [shlex.join(["pip", "install", "--no-deps", "-r", str(f.relative_to(ROOT))]) for f in files[1:]]
    return cmds


# ================================================================================ the parent: run everything
def main_parent(a) -> int:
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_dir = Path(a.state_dir).resolve() if a.state_dir else out / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt")
    t0 = now() - a.setup_s_before  # the budget counts from the wrapper's start
    budget = float(a.budget_s) + a.setup_s_before
    if a.rehearse:
        os.environ.setdefault("CAMP_FAKE_GPUS", H200)
        import gpu_fake  # noqa: E402 - benchmarks/ is on sys.path when run as a script

        gpu_fake.prepare(out, log, build_envs=a.rehearse_setup)
    else:
        from camp.runtime import hardware

        if not hardware.detect_gpus():
            print("gpu_check: this machine has no NVIDIA GPU (nvidia-smi lists none) — run it on a GPU machine, "
                  "or rehearse it here: --rehearse --scale ci", file=sys.stderr)
            return 2
    states = load_states(state_dir, a.resume_from)
    only = set(a.only.split(",")) if a.only else None
    skip = set(a.skip.split(",")) if a.skip else set()
    unknown = sorted(((only or set()) | skip) - set(BY_NAME))
    if unknown:
        print(f"gpu_check: unknown step(s) {', '.join(unknown)}; steps: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    report = Report(out, a, t0, budget)
    planned = plan(list(STEPS), states, budget - (now() - t0), a.scale, only, skip)
    # every env the asked-for steps use, whatever the budget: steps are re-planned as the run goes
    env_names = sorted({e for s, why in planned if why is None or "budget" in why for e in s.envs})
    if a.setup_only:
        env_names = sorted({e for s in STEPS if (not only or s.name in only) and s.name not in skip for e in s.envs})
    log(f"{'REHEARSAL (CPU, fake tools) — ' if a.rehearse else ''}budget {budget:.0f} s, scale {a.scale}; "
        f"envs to set up: {', '.join(env_names) or 'none'}")
    for s, why in planned:
        log(f"plan: {s.name:<14} {'run' if why is None else 'skip: ' + why}")
    setup = Setup(env_names, log, a.rehearse)
    report.setup = setup
    setup.start()
    if a.setup_only:
        for n in env_names:
            setup.wait([n], budget - (now() - t0))
        report.write(states, planned)
        log(f"setup only: envs done in {now() - t0:.0f} s")
        return 0 if all(i["status"] == "ready" for i in setup.info.values()) else 1

    for s, why in planned:
        if why is not None and states.get(s.name, {}).get("status") != "done":
            states[s.name] = {**states.get(s.name, {}), "name": s.name, "status": "skipped", "why": why}
    attempted: set[str] = set()
    while True:
        # re-planned before every step: a step whose env could not be built, or that ended early, frees its share of
        # the budget for steps first left out for time (the 7B shape on a machine where the tools cannot install)
        for st in STEPS:
            asked = (not only or st.name in only) and st.name not in skip
            if asked and st.name not in attempted and st.envs and any(setup.failed(e) for e in st.envs) and \
                    states.get(st.name, {}).get("status") != "done":
                attempted.add(st.name)
                states[st.name] = {"name": st.name, "status": "skipped", "why": setup.wait(st.envs, 0)}
        now_planned = plan([st for st in STEPS if st.name not in attempted], states, budget - (now() - t0),
                           a.scale, only, skip)
        for st, why in now_planned:
            if why is not None and states.get(st.name, {}).get("status") != "done":
                states[st.name] = {"name": st.name, "status": "skipped", "why": why}
        pending = [st for st, why in now_planned if why is None]
        if not pending:
            break
        s = next_step(pending, setup)
        attempted.add(s.name)
        left = budget - (now() - t0) - RESERVE_S
        if left < min(estimate(s, a.scale), 5):
            states[s.name] = {"name": s.name, "status": "skipped",
                              "why": f"the budget ran out ({max(0, left):.0f} s left, needs ~{estimate(s, a.scale):.0f} s)"}
            report.write(states, planned)
            continue
        missing = [n for n in s.needs if states.get(n, {}).get("status") != "done"]
        if missing:
            states[s.name] = {"name": s.name, "status": "skipped", "why": f"{', '.join(missing)} did not finish"}
            report.write(states, planned)
            continue
        if s.envs:
            why_env = setup.wait(s.envs, left - estimate(s, a.scale))
            if why_env:
                states[s.name] = {"name": s.name, "status": "skipped", "why": why_env}
                report.write(states, planned)
                continue
            left = budget - (now() - t0) - RESERVE_S
        states[s.name] = run_child(s, a, out, state_dir, left, log)
        report.write(states, planned)
        if report.first_measurement is None and states[s.name].get("status") == "done":
            report.first_measurement = round(now() - t0, 1)
    report.write(states, planned)
    log(f"done in {now() - t0:.0f} s: {out / 'results.md'}")
    return 0


def next_step(pending: list[Step], setup: Setup) -> Step:
    """The first pending step whose checkpoint step has been tried and whose envs are built; while every env a step
    needs is still being built, steps that need none go first (setup overlaps with measuring)."""
    names = {p.name for p in pending}
    for s in pending:
        if not set(s.needs) & names and all(setup.built(e) for e in s.envs):
            return s
    return pending[0]


def load_states(state_dir: Path, resume_from: str | None) -> dict[str, dict]:
    states: dict[str, dict] = {}
    if resume_from:
        for name, st in (read_json(Path(resume_from)).get("steps") or {}).items():
            if name in BY_NAME and st.get("status") == "done":
                states[name] = st
    for f in sorted(state_dir.glob("*.json")):
        st = read_json(f)
        if st.get("name") in BY_NAME:
            states[st["name"]] = st
    return states


def run_child(s: Step, a, out: Path, state_dir: Path, timeout: float, log: Log) -> dict:
    """One step in its own process (and process group), killed at its deadline."""
    path = state_dir / f"{s.name}.json"
    prev = read_json(path)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", s.name, "--out", str(out), "--state-dir",
           str(state_dir), "--work-dir", str(a.work_dir), "--scale", a.scale, "--max-tokens", str(a.max_tokens), "--levels", a.levels,
           "--iters", str(a.iters),
           "--calib-samples", str(a.calib_samples), "--eval-limit", str(a.eval_limit)]
    if a.rehearse:
        cmd.append("--rehearse")
    log(f"step {s.name}: {s.title} (deadline {timeout:.0f} s)")
    t0 = now()
    with open(out / "log.txt", "a", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
    st = read_json(path)
    if st == prev or not st:
        st = {"name": s.name}
    st["seconds"] = round(now() - t0, 1)
    if rc is None:
        st.update(status="cut", why=f"killed at its deadline ({timeout:.0f} s): the budget ran out")
    elif st.get("status") != "done":
        st.setdefault("why", f"the step process exited {rc} without finishing (see log.txt)")
        st["status"] = "failed"
    write_json(path, st)
    log(f"step {s.name}: {st['status']} in {st['seconds']} s" + (f" — {st.get('why')}" if st.get("why") else ""))
    return st


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# ================================================================================ the child: one step
class Ctx:
    def __init__(self, a, step: Step):
        self.a = a
        self.step = step
        self.out = Path(a.out)
        self.state_path = Path(a.state_dir) / f"{step.name}.json"
        self.work = Path(a.work_dir) / step.name
        self.levels = tuple(int(c) for c in a.levels.split(","))
        self.state = {"name": step.name, "title": step.title, "status": "running", "started": now(),
                      "scale": a.scale, "rehearsal": bool(a.rehearse), "note": NOTE, "data": {}}

    def save(self, **data) -> None:
        self.state["data"].update(data)
        write_json(self.state_path, self.state)

    def done(self) -> None:
        self.state["status"] = "done"
        self.state["ended"] = now()
        write_json(self.state_path, self.state)

    def folder(self, size: str) -> Path:
        st = read_json(Path(self.a.state_dir) / f"shapes-{size}.json")
        f = (st.get("data") or {}).get("folder")
        if not f or not Path(f).is_dir():
            from camp.models import shapes

            return shapes.prepare(MODELS[size], scale=self.a.scale)  # instant when the build is complete
        return Path(f)

    def shape_info(self, size: str) -> dict:
        return (read_json(Path(self.a.state_dir) / f"shapes-{size}.json").get("data") or {})

    def bandwidth(self) -> float | None:
        return (read_json(Path(self.a.state_dir) / "probe.json").get("data") or {}).get("bandwidth_gbs")


def main_child(a) -> int:
    step = BY_NAME[a.child]
    if a.rehearse:
        import gpu_fake

        gpu_fake.install(Path(a.out))
    ctx = Ctx(a, step)
    ctx.work.mkdir(parents=True, exist_ok=True)
    ctx.save()
    try:
        RUNNERS[step.kind](ctx)
    except Exception as exc:  # noqa: BLE001 - the failure is the finding: recorded with its first line
        ctx.state["status"] = "failed"
        ctx.state["why"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ''}"
        ctx.state["traceback"] = traceback.format_exc()[-4000:]
        write_json(ctx.state_path, ctx.state)
        print(ctx.state["traceback"], file=sys.stderr)
        return 1
    ctx.done()
    return 0


def _profile():
    from camp.runtime import hardware

    return hardware.profile("auto")


def _job(cmd: list[str], name: str, run_dir: Path, expect: Path):
    from camp.runtime.jobs import Job

    job = Job(cmd, name=name, run_dir=run_dir, expect=[str(expect)],
              extra_env={"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    job.run(show=False)
    return read_json(expect)


def run_probe(ctx: Ctx) -> None:
    """nvidia-smi, torch/CUDA versions and the HBM bandwidth, measured by benchmarks/gpu_probe.py as a Job."""
    prof = _profile()
    ctx.save(profile=prof.name, gpus=[g.__dict__ for g in prof.gpus], dtype=prof.dtype)
    res = _job([sys.executable, str(PROBE), "machine", "--out", str(ctx.work / "machine.json")], "probe",
               ctx.work / "job", ctx.work / "machine.json")
    ctx.save(**res)


def run_shapes(ctx: Ctx) -> None:
    from camp.models import shapes
    from camp.runtime.errors import CampError

    model = MODELS[ctx.step.size]
    cfg = shapes.shape(model, ctx.a.scale)
    need = 2.2 * shapes.weight_bytes(cfg)  # the InternLM2 folder and its normalised copy, and a margin
    where = shapes.default_dir(model, ctx.a.scale)
    where.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where.parent).free
    if not shapes.is_complete(where) and free < need:
        raise RuntimeError(f"{free / 1e9:.0f} GB free on the models' disk, {need / 1e9:.0f} GB needed for {model}")
    t0 = now()
    code = None
    try:
        shapes.remote_code()
    except CampError as exc:  # measure anyway: the remote code changes no shape (say so in the report)
        code = "none"
        ctx.save(remote_code_missing=str(exc).splitlines()[0])
    src = shapes.build(model, scale=ctx.a.scale, code=code, show=True)
    t1 = now()
    folder = shapes.prepare(model, scale=ctx.a.scale, code=code)
    ctx.save(model=model, source=str(src), folder=str(folder), weight_bytes=shapes.weight_bytes(cfg),
             build_s=round(t1 - t0, 1), normalise_s=round(now() - t1, 1), note=NOTE,
             config={k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                          "num_key_value_heads", "intermediate_size", "vocab_size")})


def _bench_levels(ctx: Ctx, target, levels, key: str = "bench") -> list[dict]:
    """camp.bench level by level, each level's row saved as soon as it is measured (partial results survive)."""
    import camp

    rows: list[dict] = []
    for c in levels:
        r = camp.bench(target, [c], requests=max(4, c), max_tokens=ctx.a.max_tokens, warmup=not rows)
        rows += r.rows
        ctx.save(**{key: rows, f"{key}_target": r.target, f"{key}_notes": r.notes, f"{key}_errors": r.errors})
    return rows


def decode_rate(row: dict, max_tokens: int) -> float | None:
    """Tokens/s of one stream after its first token: (tokens − 1) / (latency − TTFT), from a concurrency-1 row."""
    lat, ttft = row.get("latency_p50_s"), row.get("ttft_p50_s")
    per = row.get("output_tokens", 0) / max(1, row.get("requests", 1) - row.get("errors", 0))
    if not lat or ttft is None or lat <= ttft or per < 2:
        return None
    return round((per - 1) / (lat - ttft), 2)


def run_serve(ctx: Ctx) -> None:
    import camp

    o = ctx.step.options
    folder = ctx.folder(ctx.step.size)
    prof = _profile()
    if o.get("awq"):
        t0 = now()
        folder = camp.quantize(str(folder), calib_samples=ctx.a.calib_samples, calib_seqlen=1024,
                               name=f"{folder.name}-w4a16", profile=prof)
        ctx.save(quantize_s=round(now() - t0, 1), awq_folder=str(folder), calib_samples=ctx.a.calib_samples,
                 calib_seqlen=1024, awq_weight_bytes=sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")))
    t0 = now()
    ep = camp.serve(str(folder), engine=o.get("engine", "auto"), quant=o.get("quant"), profile=prof, timeout=600)
    try:
        ctx.save(start_s=round(now() - t0, 1), command=ep.job.cmd if ep.job else None,
                 plan=str(ep.plan) if ep.plan else None, log=str(ep.log_path))
        rows = _bench_levels(ctx, ep, ctx.step.options.get("levels", ctx.levels))
        one = next((r for r in rows if r["concurrency"] == 1), None)
        if one:
            ctx.save(decode_tps=decode_rate(one, ctx.a.max_tokens))
    finally:
        ep.stop()


def run_hf(ctx: Ctx) -> None:
    folder = ctx.folder(ctx.step.size)
    levels = ctx.step.options.get("levels", tuple(c for c in ctx.levels if c <= max(HF_LEVELS)))
    out = ctx.work / "hf.json"
    res = _job([sys.executable, str(PROBE), "hf", "--folder", str(folder), "--levels", ",".join(map(str, levels)),
                "--max-tokens", str(ctx.a.max_tokens), "--out", str(out)], "hf", ctx.work / "job", out)
    rows = res.get("bench", [])
    ctx.save(**res)
    one = next((r for r in rows if r["concurrency"] == 1), None)
    if one:
        ctx.save(decode_tps=decode_rate(one, ctx.a.max_tokens))


def run_finetune(ctx: Ctx) -> None:
    import camp
    from camp.training import xtuner as xt

    method = ctx.step.options["method"]
    folder = ctx.folder(ctx.step.size)
    prof = _profile()
    data = camp.data.self_cognition("小助手", "camp", n=200)
    p = camp.finetune.plan(str(folder), data, prof, method=method)
    ctx.save(plan=p.to_dict(), plan_text=str(p), predicted_total_gib=round(p.memory["total"], 3),
             predicted_allocated_mib=round((p.memory["total"] - p.memory["overhead"]) * 1024))
    peak_file = ctx.work / "cuda_peak.json"
    os.environ["CAMP_CUDA_PEAK_FILE"] = str(peak_file)  # xtuner_compat's start-up hook records the peak there
    run_dir = ctx.work / "run"
    t0 = now()
    r = camp.finetune(str(folder), data, plan=p, method=method, max_iters=ctx.a.iters, merge=False,
                      run_dir=run_dir, show=True)
    log = xt.parse_log((run_dir / "jobs" / "train" / "log.txt").read_text(encoding="utf-8", errors="replace"))
    peak = read_json(peak_file)
    ctx.save(seconds_total=round(now() - t0, 1), seconds=r.seconds, iterations=r.max_iters,
             xtuner_memory_mib=log.peak_memory_mib, torch_max_allocated_mib=peak.get("max_allocated_mib"),
             torch_max_reserved_mib=peak.get("max_reserved_mib"), losses=r.losses[-5:], config=str(r.config_path))


def run_eval(ctx: Ctx) -> None:
    import camp

    folder = ctx.folder(ctx.step.size)
    prof = _profile()
    t0 = now()
    ep = camp.serve(str(folder), engine="turbomind", profile=prof, timeout=600)
    try:
        ctx.save(start_s=round(now() - t0, 1), command=ep.job.cmd if ep.job else None)
        t1 = now()
        res = camp.evaluate([ep], [ctx.step.options["dataset"]], profile=prof, limit=ctx.a.eval_limit,
                            run_dir=ctx.work / "eval", show=True, tokenizer=str(folder))
        ctx.save(eval_s=round(now() - t1, 1), table=res.table.to_dict(orient="records"),
                 config=str(res.config_path), note="scores of a random-weight model are noise")
    finally:
        ep.stop()


RUNNERS = {"probe": run_probe, "shapes": run_shapes, "serve": run_serve, "hf": run_hf, "finetune": run_finetune,
           "eval": run_eval}


# ================================================================================ the report
class Report:
    def __init__(self, out: Path, a, t0: float, budget: float):
        self.out, self.a, self.t0, self.budget = out, a, t0, budget
        self.setup: Setup | None = None
        self.first_measurement: float | None = None

    def write(self, states: dict[str, dict], planned) -> None:
        order = [s.name for s, _ in planned]
        steps = {n: states[n] for n in order if n in states}
        data = {"note": NOTE, "rehearsal": bool(self.a.rehearse), "scale": self.a.scale, "budget_s": self.budget,
                "elapsed_s": round(now() - self.t0, 1), "time_to_first_measurement_s": self.first_measurement,
                "setup": {"wrapper": read_json(self.out / "setup.json") or None,
                          "wrapper_seconds": self.a.setup_s_before,
                          **(self.setup.summary() if self.setup else {})}, "steps": steps,
                "comparisons": comparisons(states)}
        write_json(self.out / "results.json", data)
        (self.out / "results.md").write_text(markdown(data), encoding="utf-8")


def _get(states, step, *keys):
    d = (states.get(step) or {}).get("data") or {}
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d if (states.get(step) or {}).get("status") == "done" else None


def _tps(states, step, c) -> float | None:
    rows = _get(states, step, "bench") or []
    r = next((r for r in rows if r["concurrency"] == c), None)
    return r["tokens_per_s"] if r else None


def comparisons(states: dict[str, dict]) -> dict:
    """The figures the issue asks for, side by side (None where a step did not run)."""
    out: dict = {}
    bw = _get(states, "probe", "bandwidth_gbs")
    for size in MODELS:
        hf1 = _tps(states, f"hf-{size}", 1)
        row = {"hf_tokens_per_s": {c: _tps(states, f"hf-{size}", c) for c in HF_LEVELS}}
        for step in (f"lmdeploy-{size}", f"kv8-{size}", f"awq-{size}"):
            row[step] = {c: _tps(states, step, c) for c in LEVELS}
        lm = row[f"lmdeploy-{size}"]
        hf_best = max([v for v in row["hf_tokens_per_s"].values() if v] or [0]) or None
        row["lmdeploy_vs_hf_at_1"] = round(lm[1] / hf1, 2) if lm.get(1) and hf1 else None
        row["lmdeploy_at_64_vs_hf_best"] = round(lm[64] / hf_best, 2) if lm.get(64) and hf_best else None
        wb = _get(states, f"shapes-{size}", "weight_bytes")
        limit = round(bw * 1e9 / wb, 1) if bw and wb else None
        row["bandwidth_limit_tokens_per_s"] = limit
        for step in (f"hf-{size}", f"lmdeploy-{size}", f"awq-{size}"):
            d = _get(states, step, "decode_tps")
            lim = limit
            if step.startswith("awq") and bw and _get(states, step, "awq_weight_bytes"):
                lim = round(bw * 1e9 / _get(states, step, "awq_weight_bytes"), 1)
            row[f"{step}_decode"] = {"tokens_per_s": d, "limit": lim,
                                     "fraction_of_limit": round(d / lim, 3) if d and lim else None}
        for m in ("qlora", "lora"):
            st = f"{m}-{size}"
            row[st] = {"predicted_total_gib": _get(states, st, "predicted_total_gib"),
                       "predicted_allocated_mib": _get(states, st, "predicted_allocated_mib"),
                       "xtuner_memory_mib": _get(states, st, "xtuner_memory_mib"),
                       "torch_max_allocated_mib": _get(states, st, "torch_max_allocated_mib")}
        out[size] = row
    return out


def _f(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def markdown(d: dict) -> str:
    head = "# GPU check" + (" — REHEARSAL on a CPU: every figure below is a recorded FAKE" if d["rehearsal"] else "")
    lines = [head, "", f"**{d['note']}**: the models are the published architectures with random weights; speed "
             "and memory are the real model's, answers and scores are noise.", "",
             f"scale {d['scale']} · budget {d['budget_s']:.0f} s · elapsed {d['elapsed_s']:.0f} s · first "
             f"measurement at {_f(d['time_to_first_measurement_s'])} s", ""]
    setup = d.get("setup") or {}
    lines += ["## Setup (reported apart from the measurements)", "",
              f"wrapper (check python, wheel sources): {_f(setup.get('wrapper_seconds'))} s · tool envs, built in "
              f"parallel with the first steps: {_f(setup.get('seconds_all_envs'))} s", ""]
    if setup.get("envs"):
        lines += ["| env | status | seconds | source | commands |", "|---|---|---|---|---|"]
        for name, i in setup["envs"].items():
            cmds = "<br>".join(f"`{c}`" for c in i.get("commands", []))
            lines.append(f"| {name} | {i['status']} | {_f(i.get('seconds'))} | {i.get('source', '')}"
                         + (f" — {i['error']}" if i.get("error") else "") + f" | {cmds} |")
    lines.append("")
    lines += ["## Steps", "", "| step | status | seconds | why / what |", "|---|---|---|---|"]
    for name, st in d["steps"].items():
        lines.append(f"| {name} | {st.get('status')} | {_f(st.get('seconds'))} | {st.get('why') or BY_NAME[name].title} |")
    c = d.get("comparisons") or {}
    for size, row in c.items():
        if not any(v for k, v in row.items() if isinstance(v, (int, float))) and not any(
                x for k, v in row.items() if isinstance(v, dict) for x in v.values()):
            continue
        lines += ["", f"## {MODELS[size]} ({NOTE})", "", "Output tokens/s by concurrency (camp.bench, greedy):", "",
                  "| engine | c=1 | c=16 | c=64 |", "|---|---|---|---|",
                  f"| transformers generate (in-process) | {_f(row['hf_tokens_per_s'].get(1))} | "
                  f"{_f(row['hf_tokens_per_s'].get(16))} | - |"]
        for step, label in ((f"lmdeploy-{size}", "LMDeploy TurboMind"), (f"kv8-{size}", "LMDeploy + int8 KV"),
                            (f"awq-{size}", "LMDeploy AWQ W4A16")):
            r = row[step]
            lines.append(f"| {label} | {_f(r.get(1))} | {_f(r.get(16))} | {_f(r.get(64))} |")
        lines += ["", f"LMDeploy / transformers: {_f(row['lmdeploy_vs_hf_at_1'], '.2f')}× single stream, "
                  f"{_f(row['lmdeploy_at_64_vs_hf_best'], '.2f')}× at 64 concurrent vs transformers' best "
                  "(the course says about 6×).", "",
                  "Single-stream decode vs the memory-bandwidth limit (weight bytes / measured HBM bandwidth):", "",
                  "| engine | decode tokens/s | limit | fraction |", "|---|---|---|---|"]
        for step in (f"hf-{size}", f"lmdeploy-{size}", f"awq-{size}"):
            r = row[f"{step}_decode"]
            lines.append(f"| {step} | {_f(r['tokens_per_s'])} | {_f(r['limit'])} | {_f(r['fraction_of_limit'], '.2f')} |")
        lines += ["", "Fine-tuning memory, planned vs measured (50 iterations, the planner's settings):", "",
                  "| method | planned total GiB | planned allocated MiB | XTuner `memory:` MiB | torch max allocated MiB |",
                  "|---|---|---|---|---|"]
        for m in ("qlora", "lora"):
            r = row[f"{m}-{size}"]
            lines.append(f"| {m} | {_f(r['predicted_total_gib'], '.2f')} | {_f(r['predicted_allocated_mib'], '.0f')} | "
                         f"{_f(r['xtuner_memory_mib'], '.0f')} | {_f(r['torch_max_allocated_mib'], '.0f')} |")
    return "\n".join(lines) + "\n"


# ================================================================================ CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="results folder (results.json, results.md, log.txt, state/)")
    p.add_argument("--budget-s", type=float, default=720, help="seconds for everything, setup included")
    p.add_argument("--scale", choices=("full", "ci"), default="full", help="full: the real shapes; ci: tiny ones")
    p.add_argument("--setup-only", action="store_true", help="only build (and time) the tool environments")
    p.add_argument("--rehearse", action="store_true", help="CPU rehearsal: the tools are recorded fakes")
    p.add_argument("--rehearse-setup", action="store_true",
                   help="with --rehearse: camp's env code builds the tool envs (pip faked) instead of stand-ins")
    p.add_argument("--only", help="comma-separated steps to run (others are skipped)")
    p.add_argument("--skip", help="comma-separated steps to leave out")
    p.add_argument("--state-dir", help="where each step's state JSON lives (default OUT/state)")
    p.add_argument("--work-dir", help="the steps' run folders: configs, logs, checkpoints (default OUT/work)")
    p.add_argument("--resume-from", help="an earlier run's results.json: its done steps are not run again")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per bench request")
    p.add_argument("--levels", default="1,16,64", help="bench concurrencies (transformers: those up to 16)")
    p.add_argument("--iters", type=int, default=50, help="XTuner iterations per fine-tuning step")
    p.add_argument("--calib-samples", type=int, default=32, help="AWQ calibration windows (of 1024 tokens)")
    p.add_argument("--eval-limit", type=int, default=20, help="questions of the course set to evaluate")
    p.add_argument("--setup-s-before", type=float, default=0.0,
                   help="seconds a wrapper spent before this started (gpu_check.sh): reported as setup")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.state_dir is None:
        a.state_dir = str(Path(a.out).resolve() / "state")
    if a.work_dir is None:
        a.work_dir = str(Path(a.out).resolve() / "work")
    if a.child:
        return main_child(a)
    return main_parent(a)


if __name__ == "__main__":
    sys.exit(main())
