"""camp.serve: refusals before anything starts, the LMDeploy path on a (faked) GPU, busy ports; on CPU the tiny
model behind `transformers serve` through the openai SDK, concurrency, reuse, API keys, no orphans.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import camp
import camp.serving.endpoint as _endpoint
import camp.serving.ports as _ports
from camp.runtime.errors import CampError
from tests.conftest import subprocess_env


# =============================================================================================== serve(): no server
def test_lmdeploy_and_quant_are_refused_on_cpu_before_launching(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    before = set(camp.runtime.config.runs_dir().glob("*serve*")) if camp.runtime.config.runs_dir().exists() else set()
    with pytest.raises(CampError, match="CUDA"):
        camp.serve("tiny", engine="lmdeploy")
    with pytest.raises(CampError, match="needs LMDeploy on a CUDA GPU"):
        camp.serve("tiny", quant="kv8")
    after = set(camp.runtime.config.runs_dir().glob("*serve*")) if camp.runtime.config.runs_dir().exists() else set()
    assert after == before


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", _ports.free_port(start=24500)))
    s.listen()
    return s


def test_a_busy_port_is_refused_naming_the_holder_and_open_hosts_are_warned(capsys):
    with _listener() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(CampError) as info:
            camp.serve("tiny", port=port, host="0.0.0.0")
    msg = str(info.value)
    assert f"port {port} on 0.0.0.0 is in use by pid {os.getpid()}" in msg and "leave port out" in msg
    assert "anyone who can reach this machine can use the model" in capsys.readouterr().err


def test_parse_endpoint_url():
    assert _endpoint.parse_endpoint_url("http://127.0.0.1:23333/v1#internlm2_5-7b-chat") == (
        "http://127.0.0.1:23333/v1", "internlm2_5-7b-chat")
    assert _endpoint.parse_endpoint_url("http://127.0.0.1:8000/") == ("http://127.0.0.1:8000/v1", None)
    with pytest.raises(CampError, match="not an endpoint URL"):
        _endpoint.parse_endpoint_url("127.0.0.1:8000")


# =============================================================================================== the tiny model served
def _group_gone(pgid: int, wait: float = 0.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ep():
    camp.tiny.ensure()
    endpoint = camp.serve("tiny", timeout=120)
    yield endpoint
    if not endpoint.job.done:
        endpoint.stop()


@pytest.mark.integration
def test_served_on_localhost_listed_and_healthy(ep):
    assert ep.host == "127.0.0.1" and ep.base_url == f"http://127.0.0.1:{ep.port}/v1" and ep.engine == "transformers"
    assert ep.model == "tiny"  # served under the catalogue name, as LMDeploy's --model-name does
    assert ep.healthy() and ep.models() == ["tiny"]
    assert ep.log_path.is_file() and ep.job.kill_on_exit
    assert ep in _endpoint.endpoints()
    assert ep.base_url in ep._repr_html_() and ep.to_dict()["status"] == "running"


@pytest.mark.integration
def test_commands_show_the_server_camp_ran_and_the_stock_cli(ep):
    (cmd,) = ep.commands()
    assert cmd.step == "serve" and "-m camp.serving.engines.transformers serve" in cmd.ran
    assert cmd.by_hand == f"transformers serve {ep.folder} --host 127.0.0.1 --port {ep.port} --device cpu"


@pytest.mark.integration
def test_plain_and_streaming_chat_through_the_openai_sdk(ep):
    import openai

    client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY")
    q = [{"role": "user", "content": camp.tiny.IDENTITY_QUESTION}]
    reply = client.chat.completions.create(model=ep.model, messages=q, max_tokens=64)
    assert reply.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
    pieces = [c.choices[0].delta.content for c in
              client.chat.completions.create(model=ep.model, messages=q, max_tokens=64, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "".join(pieces) == camp.tiny.IDENTITY_ANSWER
    # the Endpoint's own client
    assert ep.chat(camp.tiny.IDENTITY_QUESTION) == camp.tiny.IDENTITY_ANSWER
    streamed = list(ep.chat(camp.tiny.IDENTITY_QUESTION, stream=True))
    assert len(streamed) > 3 and "".join(streamed) == camp.tiny.IDENTITY_ANSWER
    assert len(list(ep.chat("XTuner 是什么？", stream=True, max_tokens=5))) <= 5
    # the folder path (what stock transformers serve wants) still works; another name is refused, naming ours
    by_path = client.chat.completions.create(model=str(camp.tiny.ensure()), messages=q, max_tokens=64)
    assert by_path.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
    with pytest.raises(openai.NotFoundError, match="this server serves 'tiny'"):
        client.chat.completions.create(model="internlm2_5-7b-chat", messages=q, max_tokens=4)


@pytest.mark.integration
def test_session_over_the_endpoint_keeps_history(ep):
    s = ep.session()
    assert s.backend.kind == "endpoint" and s.model == ep.model
    assert s.ask(camp.tiny.IDENTITY_QUESTION) == camp.tiny.IDENTITY_ANSWER
    assert s.history[-1] == {"role": "assistant", "content": camp.tiny.IDENTITY_ANSWER}
    w = ep.widget()  # the spine's chat widget, attached to the endpoint
    assert w.session.backend.base_url == ep.base_url and w.session.model == ep.model


@pytest.mark.integration
def test_eight_concurrent_requests_all_succeed(ep):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ep.chat(camp.tiny.IDENTITY_QUESTION, max_tokens=64), range(8)))
    assert answers == [camp.tiny.IDENTITY_ANSWER] * 8


@pytest.mark.integration
def test_a_second_serve_of_the_same_model_reuses_or_refuses(ep, tmp_path):
    assert camp.serve("tiny") is ep
    assert camp.serve(str(camp.tiny.ensure())) is ep  # the same folder by another name
    with pytest.raises(CampError, match=f"already served by this process at {ep.base_url}.*reuse=False"):
        camp.serve("tiny", reuse=False)
    with pytest.raises(CampError, match="differ"):
        camp.serve("tiny", api_key="sk-other")
    # another model on the port camp's own server holds: refused, and the holder is named
    copy = tmp_path / "tiny-copy"
    shutil.copytree(camp.tiny.ensure(), copy)
    with pytest.raises(CampError, match=f"port {ep.port} on 127.0.0.1 is in use by pid .*camp's own server"):
        camp.serve(copy, port=ep.port)


@pytest.mark.integration
def test_bench_on_the_endpoint_has_one_row_per_level_and_no_errors(ep):
    r = camp.bench(ep, concurrency=(1, 4), requests=4, max_tokens=16)
    table = r.table
    assert list(table.index) == [1, 4] and table["errors"].tolist() == [0, 0]
    assert (table["output_tokens"] > 0).all() and (table["tokens_per_s"] > 0).all()
    assert r.kind == "endpoint" and not r.notes  # transformers serve reports token usage
    fig = r.plot()
    assert len(fig.axes) == 2


@pytest.mark.integration
def test_cli_bench_prints_json_for_an_endpoint_url(ep, capsys):
    from camp.cli import main

    rc = main(["bench", f"{ep.base_url}#{ep.model}", "--concurrency", "1,2", "--requests", "2", "--max-tokens", "8",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["concurrency"] for r in out["rows"]] == [1, 2] and out["kind"] == "endpoint"
    assert all(r["errors"] == 0 and r["output_tokens"] > 0 for r in out["rows"])


@pytest.mark.integration
def test_zz_stop_frees_the_port_and_leaves_no_process(ep):
    pgid, port = ep.job.pid, ep.port
    assert not _ports.port_free("127.0.0.1", port)
    ep.stop()
    assert ep.job.done and ep.job.status == "cancelled"
    assert _group_gone(pgid) and _ports.port_free("127.0.0.1", port)
    assert ep not in _endpoint.endpoints()
    with pytest.raises(CampError, match="not reachable.*its server cancelled"):
        ep.chat("hi")


@pytest.mark.integration
def test_cli_serve_enforces_the_api_key_and_dies_with_its_parent():
    """transformers serve has no API key: camp's launcher checks it. SIGKILL the `camp serve` process (a crashed
    kernel): its server must not survive as an orphan holding the port."""
    import openai

    camp.tiny.ensure()
    port = _ports.free_port(start=24600)
    proc = subprocess.Popen([sys.executable, "-m", "camp", "serve", "tiny", "--port", str(port), "--api-key",
                             "sk-camp-test"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
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
        base = f"http://127.0.0.1:{port}/v1"
        assert f"camp serve: {base}" in out and "--api-key sk-camp-test" in out, out + proc.stderr.read()
        model = "tiny"  # the short name the server lists
        q = [{"role": "user", "content": camp.tiny.IDENTITY_QUESTION}]
        for wrong in ("EMPTY", "sk-wrong"):
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=base, api_key=wrong).chat.completions.create(model=model, messages=q,
                                                                                    max_tokens=8)
        with pytest.raises(CampError, match="401"):
            _endpoint.Endpoint(base, model).models()
        good = openai.OpenAI(base_url=base, api_key="sk-camp-test")
        reply = good.chat.completions.create(model=model, messages=q, max_tokens=64)
        assert reply.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
        assert [m.id for m in good.models.list()] == [model]
        assert _endpoint.Endpoint(base, model).healthy()  # /health needs no key, like LMDeploy's
        holder = _ports.port_holder(port)
        assert holder and holder.startswith("pid ")
        pgid = os.getpgid(int(holder.split()[1].rstrip(":")))
        assert pgid != os.getpgid(proc.pid)  # the server runs in its own process group
        proc.kill()  # no atexit, no cleanup: only the launcher's parent watch can stop the server now
        proc.wait(10)
        assert _group_gone(pgid, wait=20), "the server outlived the process that started it"
        assert _ports.port_free("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.integration
def test_a_server_that_fails_or_is_slow_raises_with_its_log_tail(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(CampError, match="exited .* before it was ready") as info:
        camp.serve(broken, timeout=120)
    first, _, rest = str(info.value).partition("\n")
    assert "ValueError: Unrecognized processing class" in first and rest.strip().startswith("log: ")  # one line + log
    # too short a timeout: the server is stopped, not left loading in the background
    with pytest.raises(CampError, match="not ready within 1 s") as info:
        camp.serve("tiny", timeout=1)
    assert not _endpoint.endpoints()
    log = Path(re.search(r"log: (\S+)", str(info.value)).group(1))
    job = json.loads((log.parent / "job.json").read_text())
    assert job["status"] == "cancelled"
    assert _ports.port_free("127.0.0.1", int(job["cmd"][job["cmd"].index("--port") + 1]))
