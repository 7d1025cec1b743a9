"""Endpoints on a camp dev machine: an http_proxy is set and no no_proxy. Everything camp does with a local endpoint
must reach it directly; and real clients — Lagent's GPTAPI, OpenCompass's OpenAISDK — work against camp.serve as
they are, through the short model name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import camp
from camp.serving.client import Client, is_local
from tests.conftest import subprocess_env

DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: a request sent to it fails at once
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def test_local_hosts_are_told_apart_from_remote_ones():
    for url in ("http://127.0.0.1:23333/v1", "http://localhost:8000", "http://[::1]:9/v1", "http://0.0.0.0:1",
                "127.0.0.5:80"):
        assert is_local(url), url
    for url in ("https://api.openai.com/v1", "http://10.1.2.3:23333/v1", "http://example.org"):
        assert not is_local(url), url


def test_remote_endpoints_still_go_through_the_proxy(monkeypatch):
    monkeypatch.setenv("https_proxy", DEAD_PROXY)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    local, remote = Client("http://127.0.0.1:1/v1"), Client("https://api.example.org/v1")
    assert local.http._trust_env is False and remote.http._trust_env is True


@pytest.fixture
def dead_proxy(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.setenv(var, DEAD_PROXY)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return subprocess_env()


def _camp(env, *args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "camp", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == 0, f"camp {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.integration
def test_serve_chat_bench_and_eval_work_behind_a_dead_proxy(dead_proxy):
    camp.tiny.ensure()
    with camp.serve("tiny", timeout=120) as ep:
        url = f"{ep.base_url}#{ep.model}"
        assert ep.model == "tiny" and ep.models() == ["tiny"]
        # camp chat over the endpoint (the CLI, as a student types it)
        out = _camp(dead_proxy, "chat", "--base-url", ep.base_url, "tiny", "-p", camp.tiny.IDENTITY_QUESTION)
        assert out.strip() == camp.tiny.IDENTITY_ANSWER
        # camp bench on the endpoint URL
        rows = json.loads(_camp(dead_proxy, "bench", url, "--concurrency", "1,2", "--requests", "2",
                                "--max-tokens", "8", "--json"))["rows"]
        assert [r["concurrency"] for r in rows] == [1, 2] and all(r["errors"] == 0 for r in rows)
        # camp eval with the endpoint as the model: OpenCompass's OpenAISDK in its env gets no_proxy
        table = json.loads(_camp(dead_proxy, "eval", url, "-d", "self_cognition_check:书生·浦语", "--limit", "2",
                                 "--json", timeout=600))
        assert [(s["model"], s["score"]) for s in table["scores"]] == [("endpoint:tiny", 100.0)]


@pytest.mark.integration
def test_lagent_gptapi_as_it_is_against_camp_serve():
    """Lagent's GPTAPI accepts only model types that start with 'gpt' or 'internlm': serve under such a name."""
    from lagent.llms import GPTAPI

    camp.tiny.ensure()
    with camp.serve("tiny", model_name="internlm2-tiny", timeout=120) as ep:
        assert ep.models() == ["internlm2-tiny"]
        llm = GPTAPI(model_type="internlm2-tiny", key="EMPTY", openai_api_base=ep.base_url + "/chat/completions",
                     retry=1)
        reply = llm.chat([{"role": "user", "content": camp.tiny.IDENTITY_QUESTION}], max_new_tokens=64)
        assert reply == camp.tiny.IDENTITY_ANSWER
