"""The widgets and the web demo as a student sees them: JupyterLab and Streamlit in a real (headless) Chromium, on the
tiny model, in Chinese. Each test types or clicks like a student and watches the page change; screenshots go to the
run folder printed at the start (`…/runs/…-browser-tests/`)."""

from __future__ import annotations

import time

import pytest

from camp.models import tiny
from tests.ui import browser as b

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ANSWERS = {d[-2]["content"]: d[-1]["content"] for d in tiny.load_dialogues() if len(d) == 2}


@pytest.fixture(scope="module")
def shots():
    from camp.runtime.jobs import new_run_dir

    folder = new_run_dir("browser-tests")
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(shots, tmp_path_factory):
    problem = b.missing()
    if problem:
        pytest.fail(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = b.launch_browser(p)
        # one page for the module: each test opens its own notebook in it
        pg = chromium.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
        pg.set_default_timeout(60_000)
        yield pg
        chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, shots):
    root = tmp_path_factory.mktemp("lab")
    server = b.Lab(root, shots / "jupyterlab.log")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _one_kernel_at_a_time(request):
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").shutdown_kernels()


def _shot(page, shots, name: str):
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ------------------------------------------------------------------------------------------ the chat widget
def test_chat_widget_streams_replies_and_answers_in_every_turn(page, lab, shots):
    tiny.ensure()
    nb = b.write_notebook(lab.root, "chat.ipynb", 'import camp\n\nw = camp.chat("tiny").widget()\nw')
    b.open_notebook(page, lab, nb)
    b.run_cell(page)
    box = page.get_by_placeholder("输入消息，按回车发送")
    box.wait_for()
    for label in ("发送", "停止", "清空"):  # the buttons the lesson names
        assert page.get_by_role("button", name=label).count() == 1, label
    b.record_texts(page, ".camp-chat-assistant", "assistant")
    # three turns: the identity question, a course question after it, and a greeting after both
    questions = ["你是谁？", "什么是 XTuner？", "你好"]
    for n, q in enumerate(questions, 1):
        box.fill(q)
        box.press("Enter")
        page.wait_for_function(
            "([n, answer]) => { const a = document.querySelectorAll('.camp-chat-assistant');"
            " return a.length === n && a[n - 1].textContent === answer; }", arg=[n, ANSWERS[q]], timeout=120_000)
        page.get_by_text("个 token").wait_for()  # the status line under the chat, once the reply is complete
    seen = b.recorded(page, "assistant")
    for i, q in enumerate(questions):
        states = [s["text"] for s in seen if s["i"] == i]
        partial = [s for s in states if s and s != "…" and s != ANSWERS[q]]
        # streamed: the bubble showed at least one proper beginning of the answer before the whole of it
        assert any(ANSWERS[q].startswith(s) for s in partial), b.dump(states)
        assert states[-1] == ANSWERS[q]
    _shot(page, shots, "chat-widget")
    page.get_by_role("button", name="清空").click()
    page.wait_for_function("() => document.querySelectorAll('.camp-chat-assistant').length === 0")
    assert b.stderr_outputs(page) == []


# ------------------------------------------------------------------------------------------ the fine-tune view
def test_finetune_view_updates_the_loss_live_and_shows_chart_and_samples_once(page, lab, shots):
    nb = b.write_notebook(
        lab.root, "finetune.ipynb",
        "import camp\n\n"
        'records = camp.data.self_cognition("小浏览", "浏览器测试")\n'
        'result = camp.finetune("tiny", records, max_iters=24, merge=False)\n'
        "result")
    b.open_notebook(page, lab, nb)
    b.record_texts(page, ".camp-loss-last", "loss")
    b.run_cell(page)
    # while XTuner trains, the chart's caption moves from one logged loss to the next
    page.wait_for_function("() => ((window.__camp || {}).loss || []).filter(s => /loss/.test(s.text)).length >= 3",
                           timeout=900_000)
    _shot(page, shots, "finetune-live")
    page.locator(".camp-finetune-result").wait_for(timeout=900_000)
    b.wait_idle(page)
    losses = [s["text"] for s in b.recorded(page, "loss") if "loss" in s["text"]]
    assert len(set(losses)) >= 3, b.dump(losses)
    out = b.cell_output(page)
    # when the run is over: the live views have become one line each, and the result shows the chart and the
    # chat hook's answers once
    assert out.locator("svg.camp-loss").count() == 1
    assert out.locator(".camp-samples").count() == 1
    assert out.locator(".camp-job-done").count() == 2  # XTuner's train and convert Jobs, now one line each
    assert out.locator(".widget-progress").count() == 0
    # progress lines are ordinary output, never on the error background
    assert b.stderr_outputs(page) == [], b.stderr_outputs(page)
    out.locator("svg.camp-loss").scroll_into_view_if_needed()
    _shot(page, shots, "finetune-done")


# ------------------------------------------------------------------------------------------ the agent view
AGENT_CELL = '''import camp
from tests.agents.test_react import Scripted


@camp.tool
def slow_add(a: int, b: int) -> str:
    """Add two whole numbers (takes a second, like a real tool call).

    Args:
        a (int): the first number
        b (int): the second number
    """
    import time

    time.sleep(1.5)
    return str(a + b)


server = Scripted(['Thought: 用工具来算。\\nAction: slow_add\\nAction Input: {"a": 58, "b": 27}\\n',
                   "Thought: 工具算出了 85。\\nFinal Answer: 58 加 27 等于 85"])
w = camp.agent(server.endpoint, [slow_add], prompt="short", max_turns=3).widget()
w'''


def test_agent_view_shows_each_step_as_it_happens(page, lab, shots):
    nb = b.write_notebook(lab.root, "agent.ipynb", AGENT_CELL)
    b.open_notebook(page, lab, nb)
    b.run_cell(page)
    box = page.get_by_placeholder("向智能体提问，按回车发送")
    box.wait_for()
    assert page.get_by_role("button", name="提问").count() == 1
    b.record_texts(page, ".camp-agent-thought, .camp-agent-action, .camp-agent-observation, .camp-agent-answer",
                   "steps")
    t0 = time.monotonic()
    box.fill("58 加 27 等于多少？")
    box.press("Enter")
    page.locator(".camp-agent-answer").wait_for(timeout=60_000)
    steps = b.recorded(page, "steps")
    texts = [s["text"] for s in steps]
    assert any("slow_add" in x and "58" in x for x in texts), b.dump(texts)  # the tool call
    assert any(x.strip().endswith("85") and "观察" in x for x in texts), b.dump(texts)  # what the tool returned
    assert "58 加 27 等于 85" in texts[-1]
    assert any("思考" in x for x in texts)
    # live: the tool's result appeared well after its call (the tool took 1.5 s), not all at once at the end
    call = next(s["t"] for s in steps if "slow_add" in s["text"])
    result = next(s["t"] for s in steps if "观察" in s["text"])
    assert result - call > 1000, b.dump(steps)
    assert time.monotonic() - t0 < 60
    _shot(page, shots, "agent-view")
    assert b.stderr_outputs(page) == []


# ------------------------------------------------------------------------------------------ the web demo
def test_streamlit_web_demo_answers_in_chinese(page, shots, monkeypatch):
    import camp.conversation.webdemo as webdemo

    monkeypatch.setenv("CAMP_LANG", "zh")
    demo = webdemo.launch("tiny")
    try:
        page.goto(demo.url)
        page.get_by_text("camp 对话").first.wait_for(timeout=120_000)
        box = page.get_by_placeholder("输入你的问题")
        box.wait_for(timeout=120_000)
        assert page.get_by_role("button", name="清空对话").count() == 1
        for n, q in enumerate(["你是谁？", "什么是 LoRA？"], 1):
            box.fill(q)
            box.press("Enter")
            page.wait_for_function(
                "([n, answer]) => { const m = document.querySelectorAll('[data-testid=\"stChatMessage\"]');"
                " return m.length === 2 * n && m[2 * n - 1].textContent.includes(answer); }",
                arg=[n, ANSWERS[q]], timeout=120_000)
        _shot(page, shots, "webdemo")
    finally:
        demo.stop()
