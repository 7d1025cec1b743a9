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


# ------------------------------------------------------------------------------------- the shape of the package
CORE_PACKAGES = ("runtime", "models", "data", "training", "evaluation", "serving", "conversation", "agents")
VIEW_METHODS = {"_repr_html_", "_repr_markdown_", "widget", "plot"}  # where the core may hand over to camp.ui


def _core_modules():
    for path in sorted((ROOT / "camp").rglob("*.py")):
        rel = path.relative_to(ROOT / "camp")
        if rel.parts[0] in CORE_PACKAGES and "site" not in rel.parts:
            yield path, ".".join(("camp", *rel.with_suffix("").parts)).removesuffix(".__init__")


def test_ls_camp_shows_the_chain():
    from camp import chain

    listed = {p.name for p in (ROOT / "camp").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    for link in chain.CHAIN:
        assert link.package.split(".")[1] in listed, link
    assert set(CORE_PACKAGES) <= listed and "ui" in listed


def test_the_core_never_imports_the_ui_outside_its_view_methods():
    import ast

    offenders = []
    for path, _mod in _core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if not any(n == "camp.ui" or n.startswith("camp.ui.") for n in names):
                continue
            scope = parents.get(node)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents.get(scope)
            if scope is None or scope.name not in VIEW_METHODS:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"core modules import camp.ui outside view methods: {offenders}"


def test_running_the_core_headless_loads_no_ui():
    code = ("import importlib, sys\n"
            f"for m in {[m for _, m in _core_modules()]!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('camp.ui')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_package_exports_a_name_that_hides_one_of_its_modules():
    import importlib
    import pkgutil

    import camp

    hidden = []
    for info in pkgutil.walk_packages(camp.__path__, "camp."):
        if not info.ispkg or ".site" in info.name:
            continue
        pkg = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(pkg.__path__):
            full = f"{info.name}.{sub.name}"
            importlib.import_module(full)
            if getattr(pkg, sub.name) is not sys.modules[full]:
                hidden.append(full)
    assert not hidden, f"these modules are hidden by a same-named export of their package: {hidden}"


def test_the_cli_is_the_chain_in_order():
    from camp import chain, cli

    parser = cli.build_parser()
    listed = [a.dest for a in parser._subparsers._group_actions[0]._choices_actions]
    assert listed[: len(chain.commands())] == chain.commands()
    assert set(listed) == set(cli.ROUTES)


def test_the_readme_lesson_table_is_the_chain():
    from camp import chain

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| notebook | lesson |"):].split("\n\n")[0].splitlines()[2:]
    rows = [tuple(c.strip().strip("`") for c in line.strip("|").split("|")[:2]) for line in table]
    assert rows == [(link.lesson, link.title) for link in chain.lessons()]
    for link in chain.lessons():
        assert (ROOT / "notebooks" / f"{link.lesson}.ipynb").is_file(), link.lesson
