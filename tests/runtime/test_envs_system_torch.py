"""CAMP_TORCH=system (benchmarks/gpu_check.sh on a GPU image): the one place that picks torch installs none, and a new
env sees the machine python's packages after its own pins."""

from __future__ import annotations

import json
import subprocess
import sys

from camp.runtime import envs


def test_system_torch_means_no_torch_line_on_cuda_only(monkeypatch):
    monkeypatch.delenv("CAMP_TORCH", raising=False)
    assert envs.torch_requirement("xtuner", "cuda") == ["torch==2.13.0"]
    monkeypatch.setenv("CAMP_TORCH", "system")
    assert envs.torch_requirement("xtuner", "cuda") == []
    assert envs.torch_requirement("lmdeploy", "cuda") == []
    assert envs.torch_requirement("xtuner", "cpu") == ["torch==2.13.0"], "a CPU machine keeps camp's pin"
    assert envs.recipe_hash("xtuner", "cuda") != envs.recipe_hash("xtuner", "cpu")


def test_a_new_venv_sees_the_machine_packages_after_its_own(tmp_path):
    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    envs._see_machine_packages(prefix)
    code = "import json, sys, torch; print(json.dumps([torch.__file__, sys.prefix, sys.path]))"
    r = subprocess.run([str(prefix / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    torch_file, env_prefix, path = json.loads(r.stdout)
    assert not torch_file.startswith(env_prefix), "torch comes from the machine's python"
    own = next(i for i, p in enumerate(path) if p.startswith(env_prefix) and p.endswith("site-packages"))
    machine = next(i for i, p in enumerate(path) if p.endswith("site-packages") and torch_file.startswith(p + "/"))
    assert own < machine, "the env's own packages (its pins) come first"
