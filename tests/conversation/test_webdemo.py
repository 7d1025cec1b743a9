"""camp webdemo: the Streamlit app answers (Streamlit's AppTest), launch() serves and stops cleanly, the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import camp.conversation.webdemo as webdemo
from camp.runtime.errors import CampError
from tests.conftest import subprocess_env


@pytest.fixture(scope="module")
def tiny():
    import camp.models.tiny

    camp.tiny.ensure()
    return camp.tiny


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.integration
def test_streamlit_app_answers_a_chat_message(tiny, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CAMP_WEBDEMO_MODEL", "tiny")
    monkeypatch.setenv("CAMP_WEBDEMO_SYSTEM", "")
    at = AppTest.from_file(str(webdemo.APP), default_timeout=120)
    at.run()
    assert not at.exception and not at.error
    at.chat_input[0].set_value(tiny.IDENTITY_QUESTION).run()
    assert not at.exception and not at.error
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == tiny.IDENTITY_ANSWER
    history = at.session_state.session.history
    assert history[-1] == {"role": "assistant", "content": tiny.IDENTITY_ANSWER}
    # the next run shows the conversation from the session history; Clear empties it
    at.run()
    assert [m.markdown[0].value for m in at.chat_message] == [tiny.IDENTITY_QUESTION, tiny.IDENTITY_ANSWER]
    at.sidebar.button[0].click().run()
    assert len(at.chat_message) == 0 and at.session_state.session.history == []


@pytest.mark.integration
def test_streamlit_app_uses_sidebar_settings(tiny, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CAMP_WEBDEMO_MODEL", "tiny")
    monkeypatch.setenv("CAMP_WEBDEMO_SYSTEM", "")
    at = AppTest.from_file(str(webdemo.APP), default_timeout=120)
    at.run()
    at.sidebar.slider[0].set_value(16).run()  # max new tokens
    at.chat_input[0].set_value("XTuner 是什么？").run()
    assert not at.exception and not at.error
    assert at.session_state.session.backend.last_stats["tokens"] <= 16


@pytest.mark.integration
def test_launch_serves_health_on_localhost_and_stop_leaves_nothing(tiny):
    demo = webdemo.launch("tiny")
    try:
        assert demo.host == "127.0.0.1" and demo.url == f"http://127.0.0.1:{demo.port}"
        with urllib.request.urlopen(demo.url + "/_stcore/health", timeout=10) as r:
            assert r.status == 200 and r.read() == b"ok"
        assert not _port_is_free(demo.port)
        pgid = demo.job.pid
        assert demo.job.log_path.is_file()
    finally:
        demo.stop()
    assert demo.job.done
    assert _port_is_free(demo.port)
    assert _group_gone(pgid)


@pytest.mark.integration
def test_launch_picks_the_next_free_port_and_refuses_a_busy_one(tiny):
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", webdemo.free_port()))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(CampError, match="in use"):
            webdemo.launch("tiny", port=taken)
        with webdemo.launch("tiny") as demo:
            assert demo.port != taken and demo.running
        assert not demo.running


def test_launch_failure_raises_with_the_log_tail(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    # streamlit exits at once when the app file is missing
    monkeypatch.setattr(webdemo, "APP", Path("/nonexistent/app.py"))
    with pytest.raises(CampError, match="exited") as info:
        webdemo.launch(model, timeout=60)
    first, _, rest = str(info.value).partition("\n")
    assert "File does not exist" in first and rest.strip().startswith("log: ")


def test_cli_warns_when_open_to_the_network(monkeypatch, capsys):
    class FakeJob:
        done = True
        status = "failed"
        problem = "exit status 1"
        log_path = "/tmp/log.txt"

        def tail(self, n):
            return ["RuntimeError: boom"]

    class FakeDemo:
        url, model, hint, job = "http://0.0.0.0:8600", "m", "hint", FakeJob()

    monkeypatch.setattr(webdemo, "launch", lambda *a, **k: FakeDemo())
    args = type("A", (), {"model": "tiny", "port": None, "host": "0.0.0.0", "system": None})()
    with pytest.raises(CampError, match="the web demo stopped .*RuntimeError: boom"):
        webdemo.cli_webdemo(args)
    err = capsys.readouterr().err
    assert "open to the network" in err


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_webdemo_prints_url_and_tunnel_hint_and_its_server_dies_with_it(tiny, stop):
    """Ctrl-C, or SIGTERM from a process manager: `camp webdemo` exits and its Streamlit server (which ignores
    SIGTERM for more than 15 s) does not outlive it."""
    port = webdemo.free_port(start=8650)
    proc = subprocess.Popen(
        [sys.executable, "-m", "camp", "webdemo", "tiny", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}" in out
        assert f"ssh -CNg -L {port}:127.0.0.1:{port} root@ssh.intern-ai.org.cn -p" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(stop)
        assert proc.wait(60) == (0 if stop == signal.SIGINT else 128 + signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while not _port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_is_free(port), "the Streamlit server outlived `camp webdemo`"
