"""A knowledge base in front of the tiny model's endpoint: kb.ask with sources, the RAG endpoint through the openai
SDK (plain and streamed), the agents' CourseSearch tool on the same retriever."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from camp import serving
from camp.rag import endpoint as rag_endpoint
from camp.rag.kb import build
from tests.conftest import ROOT
from tests.rag.helpers import FACT_DOC

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    d = tmp_path_factory.mktemp("kbdocs")
    (d / "fog_harbour.md").write_text(FACT_DOC, encoding="utf-8")
    k = build([ROOT / "assets/corpus", d], name=f"test-ep-{uuid.uuid4().hex[:6]}", show=False)
    yield k
    shutil.rmtree(k.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_endpoint():
    ep = serving.serve("tiny", profile="cpu-tiny")
    yield ep
    ep.stop()


def test_ask_returns_the_answer_with_the_right_source(kb, tiny_endpoint):
    ans = kb.ask("雾港实验室的门禁密码是什么？", model=tiny_endpoint)
    assert ans.sources[0].startswith("fog_harbour.md:")
    assert "7391-QX" in ans.passages[0].text
    assert ans.messages[-1]["content"].startswith("资料：\n[1] ")
    assert isinstance(ans.text, str) and ans.with_sources().endswith(ans.sources[-1])


def test_rag_endpoint_answers_through_the_openai_sdk(kb, tiny_endpoint):
    import openai

    ep = rag_endpoint.serve(kb, tiny_endpoint, show=False)
    try:
        client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY", max_retries=0,
                               http_client=__import__("httpx").Client(trust_env=False))
        assert [m.id for m in client.models.list().data] == [f"rag-{kb.name}"]
        q = [{"role": "user", "content": "Where does the Fog Harbour lab keep its backups?"}]
        r = client.chat.completions.create(model=ep.model, messages=q, max_tokens=32)
        text = r.choices[0].message.content
        sources = r.model_extra["sources"]
        assert any("Marlowe" in s["text"] for s in sources)
        assert "fog_harbour.md:" in text.splitlines()[-1]  # the sources line a person reads
        pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=ep.model, messages=q, max_tokens=32, stream=True) if c.choices]
        assert "fog_harbour.md:" in "".join(pieces)
        last = ep.chat("雾港实验室的推理服务器叫什么？", max_tokens=16).splitlines()[-1]
        assert last.split(": ", 1)[1].startswith("fog_harbour.md:")  # the best passage's source comes first
        bad = client.with_options(max_retries=0)
        with pytest.raises(openai.BadRequestError):
            bad.chat.completions.create(model=ep.model, messages=[{"role": "system", "content": "x"}])
    finally:
        ep.stop()
    assert not ep.healthy()


def test_course_search_tool_uses_the_rag_retriever():
    from camp.agents import tools

    search = tools.course_search()
    out = search(json.dumps({"query": "LMDeploy 显存紧张时调小哪个参数？"})).format_result()
    assert out.startswith("[05_lmdeploy.md:") and "cache-max-entry-count" in out
    assert search.kb.name == "course"
