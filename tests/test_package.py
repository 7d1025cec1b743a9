"""The package promises: cheap import, a CLI that answers, README commands that CI really runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, subprocess_env


def test_import_camp_loads_no_heavy_library():
    code = ("import sys, camp; heavy = [m for m in ('torch', 'transformers', 'streamlit', 'ipywidgets', "
            "'modelscope', 'openai', 'pandas') if m in sys.modules]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_cli_help_lists_the_commands():
    r = subprocess.run([sys.executable, "-m", "camp", "--help"], capture_output=True, text=True,
                       env=subprocess_env())
    assert r.returncode == 0
    for cmd in ("doctor", "models", "download", "env", "chat", "webdemo", "course"):
        assert cmd in r.stdout


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^camp = "camp\.cli:main"$', text, re.M)
    assert 'requires-python = ">=3.10"' in text


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```bash") + 1:]
    first, second = block[0].split("#")[0].strip(), block[1].split("#")[0].strip()
    assert (first, second) == ("make course", "make test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "set -euo pipefail" in ci


def test_make_test_installs_from_nothing():
    # a dry run of the README's test command from a clean clone: it must build the envs itself
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        clone = Path(d) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        r = subprocess.run(["make", "-n", "test"], cwd=clone, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    steps = r.stdout
    assert "-m camp env create core" in steps  # the core env, from a bare python
    assert "camp env create xtuner" in steps and "camp env create opencompass" in steps
    assert "camp tiny" in steps
    assert "apt-get install -y -qq bubblewrap" in steps  # the agents' sandbox
    assert steps.index("env create core") < steps.index("pytest")
