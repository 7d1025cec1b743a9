"""A fresh Binder session: binder/postBuild in a new venv, then a lesson whose tool env does not exist yet. The env
policy (camp.runtime.envs.ensure, used by every stage) must create it on first use instead of refusing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.integration
@pytest.mark.slow
def test_postbuild_in_a_fresh_venv_then_the_finetune_lesson_creates_its_env(tmp_path):
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
    )
    build = subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=1500)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    listed = subprocess.run([str(venv / "bin" / "camp"), "env", "list"], env=env, capture_output=True, text=True)
    assert "core         ok" in listed.stdout and "(registered)" in listed.stdout
    assert "xtuner       missing" in listed.stdout
    lesson = subprocess.run([str(venv / "bin" / "camp"), "course", "finetune_xtuner", "--profile", "cpu-tiny",
                             "--out", str(tmp_path / "course")], env=env, capture_output=True, text=True,
                            timeout=1800)
    assert lesson.returncode == 0, lesson.stdout[-3000:] + lesson.stderr[-3000:]
    assert " ok " in lesson.stdout
    assert (tmp_path / "home" / "envs" / "xtuner" / ".camp-env.json").is_file()  # created on first use
