"""`camp doctor`: a report with a profile and a fix for every problem, fast offline, stdlib only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

import camp.runtime.envs
from camp.runtime import doctor as checkup
from tests.conftest import ROOT, subprocess_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CAMP_SHARED_MODELS", str(tmp_path / "share"))
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    monkeypatch.delenv("CAMP_PROFILE", raising=False)
    return port


def by_name(report, name):
    return next(c for c in report.checks if c.name == name)


def test_cpu_machine_report(monkeypatch):
    rep = checkup.doctor()
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["profile"]["name"] == "cpu-tiny" and d["profile"]["default_model"] == "tiny"
    assert d["python"]["executable"] == sys.executable
    assert d["gpus"] == []
    gpu = by_name(rep, "GPU")
    assert gpu.status == "warn" and "cpu-tiny profile with the embedded tiny model" in gpu.fix
    assert gpu in rep.problems
    # hubs at a closed port: unreachable, with what to do
    assert d["network"]["modelscope"]["reachable"] is False and d["network"]["huggingface"]["reachable"] is False
    ms = by_name(rep, "ModelScope")
    assert ms.status == "warn" and "tiny" in ms.fix and "MODELSCOPE_ENDPOINT" in ms.fix
    assert set(d["disk"]) == {"home", "models"} and d["disk"]["models"]["free_gb"] > 0
    for p in d["problems"]:
        assert p["fix"], p  # every problem says what to do
    text = str(rep)
    assert "cpu-tiny" in text and "→ no GPU" in text
    page = rep._repr_html_()
    assert "<table" in page and ">warn</span>" in page and ">ok</span>" in page


def test_gpu_inventory_and_busy_gpu(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", json.dumps([
        {"name": "NVIDIA A100-SXM4-80GB", "total_mib": 81920, "free_mib": 80000},
        {"name": "NVIDIA A100-SXM4-80GB", "total_mib": 81920, "free_mib": 2000}]))
    rep = checkup.doctor(probe_network=False)
    assert rep.to_dict()["profile"]["name"] == "gpu-80g-x2"
    assert by_name(rep, "GPU 0").status == "ok" and "78.1 of 80.0 GiB free" in by_name(rep, "GPU 0").value
    busy = by_name(rep, "GPU 1")
    assert busy.status == "warn" and "nvidia-smi" in busy.fix
    assert "GPU" not in [c.name for c in rep.checks]  # no "no GPU" finding


def test_env_states_and_fixes(monkeypatch):
    envs = [
        {"name": "core", "path": "/x/.venv", "exists": True, "ok": True, "versions": {"torch": "2.13.0"},
         "problem": None, "fix": None},
        {"name": "xtuner", "path": "/x/envs/xtuner", "exists": False, "ok": False, "versions": {},
         "problem": "not created", "fix": "camp env create xtuner"},
    ]
    monkeypatch.setattr(camp.runtime.envs, "list_envs", lambda: envs)
    rep = checkup.doctor(probe_network=False)
    assert by_name(rep, "env core").status == "ok" and "torch 2.13.0" in by_name(rep, "env core").value
    xt = by_name(rep, "env xtuner")
    assert xt.status == "warn" and "camp env create xtuner" in xt.fix
    assert rep.to_dict()["envs"] == envs


def test_broken_env_listing_is_reported_not_raised(monkeypatch):
    def boom():
        raise RuntimeError("registry unreadable")

    monkeypatch.setattr(camp.runtime.envs, "list_envs", boom)
    rep = checkup.doctor(probe_network=False)
    c = by_name(rep, "environments")
    assert c.status == "warn" and "registry unreadable" in c.value and c.fix


def test_low_disk_gets_a_fix(monkeypatch):
    import shutil

    usage = shutil.disk_usage("/")
    monkeypatch.setattr(checkup.shutil, "disk_usage", lambda p: usage._replace(free=int(0.5e9)))
    rep = checkup.doctor(probe_network=False)
    c = by_name(rep, "disk models")
    assert c.status == "fail" and "CAMP_MODELS" in c.fix


def test_bad_camp_profile_is_a_finding(monkeypatch):
    monkeypatch.setenv("CAMP_PROFILE", "gpu-16g")
    rep = checkup.doctor(probe_network=False)
    assert by_name(rep, "CAMP_PROFILE").status == "fail"
    assert rep.to_dict()["profile"]["name"] == "cpu-tiny"


def test_cli_doctor_json_offline(offline):
    r = subprocess.run([sys.executable, "-m", "camp", "doctor", "--json"], capture_output=True, text=True, cwd=ROOT,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["profile"]["name"] == "cpu-tiny"
    assert d["network"]["modelscope"]["reachable"] is False


def test_doctor_runs_without_torch_or_any_package(offline):
    """-S: no site-packages at all (no torch, no modelscope): doctor still reports, and says torch is missing."""
    r = subprocess.run([sys.executable, "-S", "-m", "camp", "doctor", "--json"], capture_output=True, text=True,
                       cwd=ROOT, env=subprocess_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["torch"]["installed"] is False
    torch = next(c for c in d["checks"] if c["name"] == "torch")
    assert torch["status"] == "warn" and "core env" in torch["fix"]


def test_cli_doctor_text(offline):
    r = subprocess.run([sys.executable, "-m", "camp", "doctor"], capture_output=True, text=True, cwd=ROOT,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0  # warnings do not fail a report
    assert "profile cpu-tiny" in r.stdout and "→" in r.stdout
