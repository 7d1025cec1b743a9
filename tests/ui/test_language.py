"""The words a student reads: Chinese by default, English with CAMP_LANG=en; hints without markdown backticks; the
course kernel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from camp.runtime import i18n, kernel
from tests.conftest import ROOT, subprocess_env


@pytest.fixture
def zh(monkeypatch):
    monkeypatch.setenv("CAMP_LANG", "zh")


@pytest.fixture
def en(monkeypatch):
    monkeypatch.setenv("CAMP_LANG", "en")


def test_language_choice(monkeypatch):
    for var in ("CAMP_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    assert i18n.lang() == "zh"  # nothing set: Chinese
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert i18n.lang() == "en"
    monkeypatch.setenv("CAMP_LANG", "zh")
    assert i18n.lang() == "zh" and i18n.t("发送", "Send") == "发送"
    assert i18n.width("发送 ok") == 7 and i18n.pad("发送", 6) == "发送  " and i18n.pad("ab", 4, right=True) == "  ab"


def _scripted_session():
    from camp.conversation import ChatSession
    from tests.conversation.test_session import ScriptedBackend

    return ChatSession(ScriptedBackend(pieces=["你", "好"]))


def test_chat_widget_speaks_chinese_by_default(zh):
    w = _scripted_session().widget()
    assert [b.description for b in (w.send_button, w.stop_button, w.reset_button)] == ["发送", "停止", "清空"]
    assert w.input.placeholder == "输入消息，按回车发送" and "camp 对话" in w.title.value
    w.send("hi")
    w.wait(30)
    assert "个 token" in w.status.value or "用时" in w.status.value


def test_chat_widget_in_english(en):
    w = _scripted_session().widget()
    assert [b.description for b in (w.send_button, w.stop_button, w.reset_button)] == ["Send", "Stop", "Clear"]


def test_agent_view_speaks_chinese(zh):
    from camp.agents.react import Step
    from camp.ui.agent_view import step_html

    assert "思考" in step_html(Step("thought", "先算一下"))
    assert "观察" in step_html(Step("observation", "85", tool="calculator"))


def test_progress_view_texts(zh):
    from camp.ui.progress import loss_svg, samples_html

    assert "第 10 次迭代 loss 0.5" in loss_svg([(1, 2.0), (10, 0.5)])
    assert "等待" in loss_svg([])
    assert "对话检查" in samples_html([("sample", 10, "你是谁？", "我是小助手")])


def _camp(*args, **env):
    return subprocess.run([sys.executable, "-m", "camp", *args], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(**env), timeout=60)


def test_cli_help_in_chinese_and_english():
    r = _camp("--help", CAMP_LANG="zh")
    assert r.returncode == 0 and "用法：camp" in r.stdout and "无界面地运行每一课" in r.stdout and "显示帮助" in r.stdout
    r = _camp("finetune", "--help", CAMP_LANG="zh")
    assert "名字已被占用时替换旧模型" in r.stdout and "选项" in r.stdout
    r = _camp("--help", CAMP_LANG="en")
    assert "usage: camp" in r.stdout and "execute every course notebook" in r.stdout
    assert not any("\u4e00" <= c <= "\u9fff" for c in r.stdout.replace("书生·浦语 实战营", ""))


def test_cli_models_table_lines_up_in_chinese():
    r = _camp("models", CAMP_LANG="zh")
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.strip()]
    lines = [rows[0], rows[1], next(ln for ln in rows if "Shanghai" in ln)]  # header, tiny, a hub model
    assert lines[0].startswith("名字")
    # the ModelScope column starts at the same terminal column in the header and in every row
    col = [i18n.width(ln[: ln.index(key)]) for ln, key in zip(lines, ["ModelScope", "（本地构建）", "Shanghai"],
                                                                    strict=True)]
    assert len(set(col)) == 1, col


def test_doctor_hints_show_no_markdown_backticks(zh, monkeypatch):
    from camp.runtime import doctor

    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    rep = doctor.doctor(probe_network=False)
    rep.checks.append(doctor.Check("env", "env demo", "warn", "missing", "run `camp env create xtuner` first"))
    text = str(rep)
    assert "`" not in text and "run camp env create xtuner first" in text
    assert "没有 GPU" in text
    page = rep._repr_html_()
    assert "`" not in page and "<code>camp env create xtuner</code>" in page


def test_the_course_kernel_is_installed_in_the_core_env():
    """`make setup` (camp env create core) installs the `camp` kernelspec; the lessons and `camp course` use it."""
    assert kernel.installed(sys.prefix), f"run `make setup`: no {kernel.NAME!r} kernel in {sys.prefix}"
    assert kernel.name_for(sys.executable) == "camp"
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("camp")
    assert spec.display_name == kernel.DISPLAY_NAME and spec.argv[0] == str(Path(sys.prefix) / "bin" / "python")


def _undocumented_in_chinese(parser, path=("camp",)):
    import argparse

    def chinese(text):
        return any("\u4e00" <= c <= "\u9fff" for c in text or "")

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            yield from ((*path, c.dest) for c in a._choices_actions if not chinese(c.help))
            for name, sub in a.choices.items():
                yield from _undocumented_in_chinese(sub, (*path, name))
        elif not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS and not chinese(a.help):
            yield (*path, a.dest)


def test_every_command_and_option_has_chinese_help(zh):
    from camp import cli

    parser = cli.build_parser()
    assert not list(_undocumented_in_chinese(parser))
    r = _camp("rag", "serve", "--help", CAMP_LANG="zh")
    assert "只有本机能访问" in r.stdout
    r = _camp("homework", "--help", CAMP_LANG="en")
    assert "autograde in the sandbox" in r.stdout and not any("\u4e00" <= c <= "\u9fff" for c in r.stdout)
