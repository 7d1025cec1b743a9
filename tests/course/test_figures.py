"""The lessons' figures: every one a notebook embeds exists, is drawn by assets/figures/make_figures.py, and the
committed file is what the script draws today (so the charts match the catalogue and the memory planners)."""

from __future__ import annotations

import importlib.util
import re

import matplotlib
import nbformat
import pytest

from camp import course
from tests.conftest import ROOT

FIGURES = ROOT / "assets" / "figures"
LINK = re.compile(r"!\[[^\]]*\]\(\.\./assets/figures/([^)\s]+)\)")


def _script():
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _embedded() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for nb_path in course.notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for name in LINK.findall(cell.source):
                    out.setdefault(name, set()).add(nb_path.stem)
    return out


def test_every_embedded_figure_exists_and_is_drawn_by_the_script():
    embedded = _embedded()
    assert embedded, "no lesson embeds a figure"
    drawn = {f"{name}.svg" for name in _script().FIGURES}
    for name, lessons in embedded.items():
        assert (FIGURES / name).is_file(), f"{sorted(lessons)} embed {name}, which is not in assets/figures/"
        assert name in drawn, f"{name} is not drawn by make_figures.py"
    assert {p.name for p in FIGURES.glob("*.svg")} == drawn, "an SVG in assets/figures/ that no script draws"


def test_the_lessons_before_the_tools_show_figures_before_they_are_run():
    embedded = _embedded()
    for lesson in ("00_overview", "03_finetune_xtuner", "04_evaluate_opencompass", "05_deploy_lmdeploy",
                   "06_agents_lagent"):
        assert any(lesson in lessons for lessons in embedded.values()), f"{lesson} embeds no figure"


def test_the_committed_figures_are_what_the_script_draws(tmp_path):
    script = _script()
    if matplotlib.__version__ != script.MATPLOTLIB:
        pytest.skip(f"the figures were drawn with matplotlib {script.MATPLOTLIB}; this is {matplotlib.__version__}")
    for path in script.main(tmp_path):
        committed = FIGURES / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed.name} is out of date: run `python assets/figures/make_figures.py`")
