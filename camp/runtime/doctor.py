"""`camp doctor`: what this machine is, what works, and what to do about what doesn't.

Stdlib only and fast (under 2 s offline): GPUs come from nvidia-smi (camp.hardware), torch's version and CUDA
build are read from torch/version.py without importing torch (1-2 s) — torch is imported only on a GPU
machine, to ask whether CUDA really works — and the hub probes, the environment listing and that import
run in parallel threads.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camp.runtime.i18n import t

STATUSES = ("ok", "info", "warn", "fail")


@dataclass
class Check:
    section: str
    name: str
    status: str  # ok | info | warn | fail
    value: str
    fix: str | None = None


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def problems(self) -> list[Check]:
        """Checks that need attention (warn/fail), each with what to do."""
        return [c for c in self.checks if c.status in ("warn", "fail")]

    @property
    def profile(self) -> str:
        return self.data.get("profile", {}).get("name", "?")

    def to_dict(self) -> dict:
        return {**self.data, "checks": [asdict(c) for c in self.checks],
                "problems": [asdict(c) for c in self.problems], "seconds": round(self.seconds, 2)}

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [t(f"camp doctor — camp {self.data.get('camp', {}).get('version', '?')}，配置档 {self.profile}"
                   f"（{self.seconds:.2f} 秒）",
                   f"camp doctor — camp {self.data.get('camp', {}).get('version', '?')}, "
                   f"profile {self.profile} ({self.seconds:.2f} s)")]
        for c in self.checks:
            lines.append(f"  {c.status:<4}  {c.name:<{width}}  {c.value}")
            if c.fix and c.status in ("warn", "fail"):
                lines.append(f"  {'':<4}  {'':<{width}}  → {_plain(c.fix)}")
        lines.append(_summary(len(self.problems)))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from camp.ui.html import doctor_html

        return doctor_html(self)


def _summary(n: int) -> str:
    if not n:
        return t("没有发现问题", "no problems found")
    return t(f"{n} 个问题：见 → 开头的行", f"{n} problem{'s' if n > 1 else ''}: see the → lines")


def _plain(text: str) -> str:
    """A hint for a terminal: commands are written `like this` in the source; a terminal shows them bare."""
    return text.replace("`", "")



# ---------------------------------------------------------------- pieces
def _torch_build() -> dict:
    """torch's version and CUDA build from torch/version.py, without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return {"installed": False, "version": None, "cuda_build": None}
    info = {"installed": True, "version": None, "cuda_build": None}
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M)
        info["version"] = m.group(1) if m else None
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)", text, re.M)
        info["cuda_build"] = m.group(1) if m else None
    except OSError:
        pass
    if info["version"] is None:
        try:
            from importlib.metadata import version

            info["version"] = version("torch")
        except Exception:
            pass
    return info


def _cuda_available(out: dict) -> None:
    try:
        import torch

        out["available"] = bool(torch.cuda.is_available())
        out["device_count"] = torch.cuda.device_count() if out["available"] else 0
    except Exception as exc:  # a broken torch install is a finding, not a crash
        out["error"] = f"{type(exc).__name__}: {exc}"


def _disk(path: Path) -> dict:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent  # not created yet: report the disk it will live on
    try:
        u = shutil.disk_usage(p)
    except OSError:
        return {"path": str(path), "free_gb": None, "total_gb": None}
    return {"path": str(path), "free_gb": round(u.free / 1e9, 1), "total_gb": round(u.total / 1e9, 1)}


def _list_envs(out: dict) -> None:
    try:
        from camp.runtime import envs

        out["envs"] = envs.list_envs()
        out["needs_cuda"] = {e["name"]: getattr(envs.spec(e["name"]), "needs_cuda", False) for e in out["envs"]}
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- the report
def doctor(*, probe_network: bool = True) -> Report:
    """Check this machine for the course; str(report) for a terminal, display(report) in JupyterLab."""
    import camp
    from camp import models
    from camp.models import hub, listing
    from camp.runtime import config, hardware
    from camp.runtime.errors import CampError

    t0 = time.monotonic()
    checks: list[Check] = []
    data: dict = {}

    # slow parts first, in parallel: hub probes, env listing (runs each env's python), torch+CUDA
    urls = {"modelscope": models.modelscope_endpoint(), "huggingface": models.hf_endpoint() or hub.DEFAULT_HF}
    net: dict = {}
    net_thread = None
    if probe_network:
        net_thread = threading.Thread(target=lambda: net.update(models.probe_many(urls)), daemon=True)
        net_thread.start()
    env_out: dict = {}
    env_thread = threading.Thread(target=_list_envs, args=(env_out,), daemon=True)
    env_thread.start()

    gpus = hardware.detect_gpus()
    tb = _torch_build()
    cuda: dict = {}
    cuda_thread = None
    if tb["installed"] and tb["cuda_build"] and gpus and os.environ.get("CAMP_FAKE_GPUS") is None:
        cuda_thread = threading.Thread(target=_cuda_available, args=(cuda,), daemon=True)
        cuda_thread.start()

    # Python, camp
    py_ok = sys.version_info >= (3, 10)
    data["python"] = {"version": sys.version.split()[0], "executable": sys.executable}
    checks.append(Check("system", "Python", "ok" if py_ok else "fail",
                        f"{data['python']['version']} at {sys.executable}",
                        None if py_ok else t("camp 需要 Python >= 3.10：请用课程的 core 环境（`make course` 会创建 .venv）",
                                              "camp needs Python >= 3.10: use the core env (`make course` creates .venv)")))
    data["camp"] = {"version": camp.__version__, "path": str(config.PACKAGE_DIR), "home": str(config.home())}
    checks.append(Check("system", "camp", "ok", f"{camp.__version__} at {config.PACKAGE_DIR}, home {config.home()}"))

    # profile (needed to judge torch and envs)
    try:
        prof = hardware.profile()
    except CampError as exc:  # CAMP_PROFILE set to nonsense: say so and carry on with what was detected
        checks.append(Check("profile", "CAMP_PROFILE", "fail", str(exc),
                            t("取消 CAMP_PROFILE，或设成有效的配置档名", "unset CAMP_PROFILE or give a valid name")))
        prof = hardware.profile(hardware.choose_profile(gpus))

    # GPUs
    data["gpus"] = [asdict(g) for g in gpus]
    if not gpus:
        checks.append(Check("gpu", "GPU", "warn", t("没有找到", "none found") + (
                            "" if shutil.which("nvidia-smi") else t("（没有 nvidia-smi）", " (no nvidia-smi)")),
                            t("没有 GPU：课程会用 cpu-tiny 配置档和内置的 tiny 模型运行",
                              "no GPU: the course runs on the cpu-tiny profile with the embedded tiny model")))
    for g in gpus:
        busy = g.total_mib and g.free_mib < 0.5 * g.total_mib
        checks.append(Check("gpu", f"GPU {g.index}", "warn" if busy else "ok",
                            f"{g.name}: {g.free_gib:.1f} of {g.total_gib:.1f} GiB free",
                            t("别的进程占着这块 GPU 的显存：用 `nvidia-smi` 查看，停掉它，或用 CUDA_VISIBLE_DEVICES "
                              "换一块 GPU",
                              "another process holds this GPU's memory: see `nvidia-smi`, stop it or pick another "
                              "GPU with CUDA_VISIBLE_DEVICES") if busy else None))

    # torch
    if cuda_thread is not None:
        cuda_thread.join(30)
    data["torch"] = {**tb, "cuda_available": cuda.get("available", False), "error": cuda.get("error")}
    if not tb["installed"]:
        checks.append(Check("system", "torch", "warn", t(f"{sys.executable} 里没有安装", f"not installed in {sys.executable}"),
                            t("请在 camp 的 core 环境里运行 notebook：`make course` 会创建它（.venv），或运行 "
                              "`python -m camp env create core`",
                              "run the notebooks in camp's core env: `make course` creates it (.venv), or "
                              "`python -m camp env create core`")))
    else:
        value = f"{tb['version']}, " + (f"CUDA {tb['cuda_build']} build" if tb["cuda_build"] else "CPU build")
        status, fix = "ok", None
        if gpus and not tb["cuda_build"] and os.environ.get("CAMP_FAKE_GPUS") is None:
            status, fix = "warn", t("这台机器有 GPU，但这里的 torch 是 CPU 版：请在本机重建 core 环境"
                                    "（`camp env create core --force`）",
                                    "this machine has a GPU but torch here is a CPU build: recreate the core env "
                                    "on this machine (`camp env create core --force`)")
        elif cuda_thread is not None:
            if cuda.get("available"):
                value += f", CUDA available ({cuda.get('device_count')} device(s))"
            else:
                status = "fail"
                value += ", CUDA NOT available" + (f" ({cuda['error']})" if cuda.get("error") else "")
                fix = t(f"torch 用不了 GPU：检查 `nvidia-smi` 能否运行，驱动是否支持 CUDA {tb['cuda_build']}"
                        "（或安装针对更旧 CUDA 编译的 torch）",
                        "torch cannot use the GPU: check `nvidia-smi` works and that the driver supports CUDA "
                        f"{tb['cuda_build']} (or install a torch built for an older CUDA)")
        checks.append(Check("system", "torch", status, value, fix))

    # profile
    data["profile"] = prof.to_dict()
    note = ("; " + "; ".join(prof.notes)) if prof.notes else ""
    checks.append(Check("profile", "profile", "ok",
                        f"{prof.name} (device {prof.device}, {prof.dtype}, default model {prof.default_model}){note}"))
    try:
        m = models.get(prof.default_model)
        state, where = listing._local_state(m)
        ok = state not in ("-",)
        size = f"~{m.params * 2:.0f} GB download" if m.ids else ""
        checks.append(Check("profile", "default model", "ok" if ok else "info",
                            f"{m.name}: " + (f"{state} ({where})" if where else state if ok else
                                             f"not on this machine yet ({size})"),
                            None))
    except Exception as exc:
        checks.append(Check("profile", "default model", "warn", f"{prof.default_model}: {exc}", None))

    # environments
    env_thread.join(60)
    if "envs" in env_out:
        data["envs"] = env_out["envs"]
        for e in env_out["envs"]:
            versions = ", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items() if v)
            if e.get("ok") and not e.get("problem"):
                checks.append(Check("env", f"env {e['name']}", "ok", f"{e.get('path')} ({versions or 'ok'})"))
                continue
            cuda_only = env_out.get("needs_cuda", {}).get(e["name"]) and prof.device == "cpu"
            status = "info" if cuda_only else "warn"
            problem = e.get("problem") or ("missing" if not e.get("exists") else "not usable")
            fix = e.get("fix") or f"camp env create {e['name']}"
            if not e.get("exists") and not cuda_only and "`" not in fix:
                fix = t(f"缺少环境 {e['name']}：运行 `{fix}`", f"env {e['name']} missing: run `{fix}`")
            checks.append(Check("env", f"env {e['name']}", status, f"{problem} ({e.get('path')})",
                                fix if not cuda_only else None))
    else:
        err = env_out.get("error", "listing timed out")
        data["envs"] = []
        checks.append(Check("env", "environments", "warn", f"could not list environments: {err}",
                            t("运行 `camp env list` 查看错误", "run `camp env list` to see the error")))

    # network
    if net_thread is not None:
        net_thread.join(hub.PROBE_TIMEOUT + 0.5)
        data["network"] = {k: {"url": urls[k], "reachable": v[0], "detail": v[1]} for k, v in net.items()}
        ms, hf = net.get("modelscope", (False, "not probed")), net.get("huggingface", (False, "not probed"))
        checks.append(Check("network", "ModelScope", "ok" if ms[0] else "warn", f"{urls['modelscope']}: {ms[1]}",
                            None if ms[0] or hf[0] and models.hf_endpoint() else
                            t("连不上模型库：模型只能来自共享目录或缓存——内置的 `tiny` 模型总能用；可以把 "
                              "MODELSCOPE_ENDPOINT（或 HF_ENDPOINT）设成能访问的镜像，或把模型文件夹拷到共享目录"
                              "（CAMP_SHARED_MODELS）",
                              "no model hub: models come from the shared folder or the cache only — the embedded "
                              "`tiny` model always works; set MODELSCOPE_ENDPOINT (or HF_ENDPOINT) to a reachable "
                              "mirror, or copy model folders into a shared folder (CAMP_SHARED_MODELS)")))
        hf_configured = models.hf_endpoint() is not None
        checks.append(Check("network", "Hugging Face", "ok" if hf[0] else ("warn" if hf_configured else "info"),
                            f"{urls['huggingface']}: {hf[1]}" + ("" if hf_configured else
                                                                 t("（仅在设置了 HF_ENDPOINT 时作为备选）",
                                                                   " (fallback only when HF_ENDPOINT is set)")),
                            t("检查 HF_ENDPOINT / CAMP_HF_ENDPOINT", "check HF_ENDPOINT / CAMP_HF_ENDPOINT") if hf_configured and not hf[0] else None))
    else:
        data["network"] = {}

    # shared models, disk
    shared = [str(d) for d in config.shared_model_dirs() if d.is_dir()]
    data["shared_model_dirs"] = shared
    checks.append(Check("disk", "shared models", "ok" if shared else "info",
                        ", ".join(shared) if shared else
                        t("无（InternStudio 挂载在 /root/share/new_models；其他机器请设置 CAMP_SHARED_MODELS）",
                          "none (InternStudio mounts /root/share/new_models; set CAMP_SHARED_MODELS for others)")))
    data["disk"] = {"home": _disk(config.home()), "models": _disk(config.models_dir())}
    for key, need_warn, why in (("home", 5, t("每个环境约占 2-3 GB", "environments take ~2-3 GB each")),
                                ("models", 20, t("单是 internlm2_5-7b-chat 就约 16 GB", "internlm2_5-7b-chat alone is ~16 GB"))):
        d = data["disk"][key]
        free = d["free_gb"]
        if free is None:
            checks.append(Check("disk", f"disk {key}", "warn", f"{d['path']}: cannot read free space", None))
            continue
        status = "ok" if free >= need_warn or (key == "models" and prof.device == "cpu" and free >= 2) else (
            "fail" if free < 1 else "warn")
        fix = None
        if status != "ok":
            fix = t(f"清理 {d['path']} 下的空间（{why}），或把 CAMP_HOME / CAMP_MODELS 指向更大的磁盘",
                    f"free space under {d['path']} ({why}), or point CAMP_HOME / CAMP_MODELS at a bigger disk")
        checks.append(Check("disk", f"disk {key}", status, f"{free:g} GB free of {d['total_gb']:g} GB at {d['path']}",
                            fix))

    rep = Report(checks, data, time.monotonic() - t0)
    return rep


def cli_doctor(args) -> int:
    rep = doctor()
    if getattr(args, "json", False):
        import json

        print(json.dumps(rep.to_dict(), indent=1, ensure_ascii=False, default=str))
    else:
        print(rep)
    return 0  # a report, not a test: warnings do not fail the command
