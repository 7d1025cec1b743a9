"""Environments: the torch line per machine, creation failures that name the package, register, run, list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from camp.runtime import envs
from camp.runtime.errors import CampError
from tests.conftest import subprocess_env


@pytest.fixture
def camp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_torch_line_is_chosen_by_machine():
    assert envs.torch_requirement("xtuner", "cpu") == ["torch==2.13.0"]
    assert envs.torch_requirement("core", "cuda") == ["torch==2.13.0"]
    # LMDeploy 0.18 pins torch<=2.12.1 and has no CPU build at all
    assert envs.torch_requirement("lmdeploy", "cuda") == ["torch==2.12.1"]
    with pytest.raises(CampError):
        envs.torch_requirement("lmdeploy", "cpu")


def test_torch_index_for_cpu_machines_elsewhere(monkeypatch):
    monkeypatch.setenv("CAMP_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
    assert envs.torch_requirement("core", "cpu") == [
        "torch==2.13.0", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]


def test_requirement_files_pin_everything_but_torch():
    for name in envs.SPECS:
        for f in envs.requirement_files(name):
            reqs = [x.strip() for x in f.read_text().splitlines() if x.strip() and not x.startswith("#")]
            assert reqs, f
            assert not any(r.split("=")[0].split("[")[0] == "torch" for r in reqs), f"{f} must not pin torch"
    xtuner = envs.requirement_files("xtuner")
    assert [f.name for f in xtuner] == ["xtuner.txt", "xtuner.nodeps.txt"]
    assert "torchvision" not in xtuner[0].read_text().split("#")[-1]


def test_lmdeploy_refused_on_cpu(camp_home, monkeypatch):
    monkeypatch.delenv("CAMP_FAKE_GPUS", raising=False)
    monkeypatch.setattr(envs, "machine", lambda: "cpu")
    with pytest.raises(CampError, match="needs an NVIDIA GPU"):
        envs.create("lmdeploy")
    assert not (camp_home / "envs" / "lmdeploy").exists()


def test_fake_gpu_inventory_switches_machine(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "80")
    assert envs.machine() == "cuda"
    assert envs.torch_requirement("lmdeploy") == ["torch==2.12.1"]
    monkeypatch.setenv("CAMP_FAKE_GPUS", "")
    assert envs.machine() == "cpu"


def test_explain_pip_failure_names_package_and_reason():
    out = [
        "Collecting nosuchpkg-camp==1.0",
        "ERROR: Could not find a version that satisfies the requirement nosuchpkg-camp==1.0 (from versions: none)",
        "ERROR: No matching distribution found for nosuchpkg-camp==1.0",
    ]
    msg = envs.explain_pip_failure(out)
    assert "nosuchpkg-camp==1.0" in msg and "no version" in msg
    conflict = [
        "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.",
        "The conflict is caused by:",
        "    a 1 depends on numpy<2",
        "    b 2 depends on numpy>=2",
    ]
    msg = envs.explain_pip_failure(conflict)
    assert "numpy<2" in msg and "numpy>=2" in msg


@pytest.mark.integration  # runs the real tool (pip / ModelScope / LMDeploy's launcher / git): seconds
def test_create_failure_names_the_package_and_marks_nothing(camp_home, tmp_path, monkeypatch):
    reqs = tmp_path / "reqs"
    reqs.mkdir()
    (reqs / "opencompass.txt").write_text("camp-no-such-package-xyz==9.9.9\n")
    monkeypatch.setattr("camp.runtime.config.environments_dir", lambda: reqs)
    monkeypatch.setattr(envs, "machine", lambda: "cpu")
    with pytest.raises(CampError) as err:
        envs.create("opencompass", show=False)
    assert "camp-no-such-package-xyz==9.9.9" in str(err.value)
    assert "log:" in str(err.value)
    prefix = camp_home / "envs" / "opencompass"
    assert not (prefix / envs.MARKER).exists()
    st = envs.status("opencompass")
    assert st["exists"] and not st["ok"] and "incomplete" in st["problem"]
    with pytest.raises(CampError, match="incomplete"):
        envs.python("opencompass")


def test_register_run_and_list(camp_home):
    # adopt the env these tests run in as "core" (InternStudio: an existing conda env)
    prefix = Path(sys.prefix)
    assert envs.register("core", prefix) == prefix.resolve()
    st = envs.status("core")
    assert st["registered"] and st["ok"] and st["versions"]["transformers"].startswith("5.")
    r = envs.run("core", ["python", "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert r.stdout.strip() == str(prefix.resolve()) or Path(r.stdout.strip()).resolve() == prefix.resolve()
    with pytest.raises(CampError, match="no xtuner installed"):
        envs.register("xtuner", prefix)
    with pytest.raises(CampError, match="is not an environment"):
        envs.register("xtuner", camp_home / "nowhere")


def test_cli_env_list_json_and_run(camp_home):
    env = subprocess_env(CAMP_HOME=str(camp_home))
    r = subprocess.run([sys.executable, "-m", "camp", "env", "list", "--json"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows] == ["core", "xtuner", "opencompass", "lmdeploy", "llamaindex", "huixiangdou"]
    missing = {x["name"]: x for x in rows}["xtuner"]
    assert missing["fix"] == "camp env create xtuner" or missing["ok"]
    r = subprocess.run([sys.executable, "-m", "camp", "env", "run", "xtuner", "--", "python", "-V"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "camp env create xtuner" in r.stderr and "Traceback" not in r.stderr


def test_cli_create_lmdeploy_on_cpu_refuses_cleanly(camp_home):
    env = subprocess_env(CAMP_HOME=str(camp_home), CAMP_FAKE_GPUS="")
    r = subprocess.run([sys.executable, "-m", "camp", "env", "create", "lmdeploy"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert "needs an NVIDIA GPU" in r.stderr and "Traceback" not in r.stderr


def test_second_creator_waits_instead_of_deleting_a_build_in_progress(camp_home, monkeypatch):
    import threading
    import time

    monkeypatch.setattr(envs, "machine", lambda: "cpu")
    prefix = camp_home / "envs" / "xtuner"
    prefix.mkdir(parents=True)
    results = []
    with envs._lock(prefix):  # "another process" is building it
        t = threading.Thread(target=lambda: results.append(envs.create("xtuner", show=False)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and prefix.exists()  # waiting, not wiping
        (prefix / envs.MARKER).write_text(json.dumps({"recipe": envs.recipe_hash("xtuner", "cpu")}))
    t.join(20)
    assert results == [prefix]  # the finished env was taken as it is


def test_uv_gets_pips_index_settings_the_environment_winning():
    listing = "\n".join([
        "global.index-url='https://pypi.tuna.tsinghua.edu.cn/simple'",
        "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
        "global.find-links='/opt/old'",
        ":env:.find-links='/opt/wheels'",
        "global.cert='/etc/ssl/certs/ca.crt'",
    ])
    assert envs.pip_config_as_uv(listing) == [
        "--index-url", "https://pypi.tuna.tsinghua.edu.cn/simple",
        "--extra-index-url", "file:///opt/a/simple", "--extra-index-url", "file:///opt/b/simple",
        "--find-links", "/opt/wheels"]
    assert envs.pip_config_as_uv("") == []


def test_explain_uv_failure_names_package_and_reason():
    missing = ["error: No solution found when resolving dependencies",
               "  cause: Because nosuchpkg-camp was not found in the package registry and you require "
               "nosuchpkg-camp==1.0, we can conclude that your requirements are unsatisfiable."]
    assert envs.explain_uv_failure(missing).startswith("nosuchpkg-camp==1.0: not on the package index")
    wrapped = ["error: No solution found when resolving dependencies",  # as uv prints it into a log file
               "  cause: Because nosuchpkg-camp was not found in the package registry",
               "         and you require nosuchpkg-camp==1.0, we can conclude that",
               "         your requirements are unsatisfiable."]
    assert envs.explain_uv_failure(wrapped) == envs.explain_uv_failure(missing)
    conflict = ["error: No solution found when resolving dependencies",
                "  cause: Because pandas>=3.1.1 depends on numpy>=2.0.2 and you require numpy<2, we can conclude "
                "that your requirements and pandas>=3.1.1 are incompatible.",
                "         And because you require pandas==3.1.1, we can conclude that your requirements are "
                "unsatisfiable."]
    msg = envs.explain_uv_failure(conflict)
    assert msg.startswith("conflicting pins") and "numpy<2" in msg and "pandas==3.1.1" in msg
    assert envs.explain_uv_failure(["Resolved 3 packages in 10ms"]) is None


def test_uv_installs_but_torch_comes_through_pip(monkeypatch, tmp_path):
    monkeypatch.delenv("CAMP_INSTALLER", raising=False)
    monkeypatch.delenv("CAMP_TORCH", raising=False)
    monkeypatch.setattr(envs, "uv_settings", lambda py: ["--index-strategy", "unsafe-best-match"])
    stage = envs.EnvStage("xtuner", path=tmp_path / "xt", show=False)
    stage.on = "cpu"
    steps = list(stage.steps(tmp_path))
    first = steps[0].cmd
    assert first[1:4] == ["-m", "pip", "install"] and envs.UV in first and "torch==2.13.0" in first
    assert all(s.cmd[0].endswith("/uv") and "torch==2.13.0" not in s.cmd for s in steps[1:])
    assert "--no-deps" in steps[-1].cmd and str(envs.requirement_files("xtuner")[-1]) in steps[-1].cmd
    monkeypatch.setenv("CAMP_INSTALLER", "pip")  # the way back to pip alone
    assert all(s.cmd[1:4] == ["-m", "pip", "install"] for s in stage.steps(tmp_path))
    monkeypatch.setenv("CAMP_INSTALLER", "")
    monkeypatch.setenv("CAMP_TORCH", "system")  # the machine's torch is visible to pip only
    assert envs.installer() == "pip"
    monkeypatch.setenv("CAMP_INSTALLER", "conda")
    with pytest.raises(CampError, match="use uv or pip"):
        envs.installer()
