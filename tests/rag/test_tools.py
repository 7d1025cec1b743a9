"""The real tools in their own environments: LlamaIndex over a camp knowledge base (answering with the tiny model's
endpoint), HuixiangDou's store build and retrieval, offline."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from camp import serving
from camp.rag import huixiangdou, llamaindex
from camp.rag.kb import build
from camp.runtime.errors import CampError
from tests.conftest import ROOT
from tests.rag.helpers import FACT_DOC

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tooldocs")
    for name in ("03_xtuner.md", "05_lmdeploy.md", "07_huixiangdou.md"):
        shutil.copy(ROOT / "assets/corpus" / name, d / name)
    (d / "fog_harbour.md").write_text(FACT_DOC, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def tiny_endpoint():
    ep = serving.serve("tiny", profile="cpu-tiny")
    yield ep
    ep.stop()


def test_llamaindex_retrieves_the_same_passages_and_asks_the_endpoint(docs, tiny_endpoint, tmp_path):
    kb = build(docs, name=f"test-li-{uuid.uuid4().hex[:6]}", show=False)
    try:
        qs = ["雾港实验室的门禁密码是什么？", "Which command merges a LoRA adapter into the base model?"]
        r = llamaindex.query(kb, qs, model=tiny_endpoint, run_dir=tmp_path / "li", show=False)
        assert [row["question"] for row in r.rows] == qs
        assert r.rows[0]["sources"][0].startswith("fog_harbour.md:")
        assert r.rows[1]["sources"][0].startswith("03_xtuner.md:")
        for row in r.rows:  # LlamaIndex's dense retrieval ranks as camp's dense mode does
            ours = [h.where for h in kb.search(row["question"], 3, mode="dense")]
            assert row["sources"][0] == ours[0]
            assert isinstance(row["answer"], str)
        assert json.loads((tmp_path / "li" / "job.json").read_text())["upstream"]["model"] == tiny_endpoint.model
    finally:
        shutil.rmtree(kb.folder, ignore_errors=True)


def test_llamaindex_refuses_bad_input(docs, tiny_endpoint):
    kb = build(docs, name=f"test-li-{uuid.uuid4().hex[:6]}", show=False)
    try:
        with pytest.raises(CampError, match="non-empty questions"):
            llamaindex.query(kb, [" "], model=tiny_endpoint, show=False)
    finally:
        shutil.rmtree(kb.folder, ignore_errors=True)


def test_huixiangdou_builds_its_store_offline_and_retrieves(docs, tmp_path):
    qs = ["雾港实验室的推理服务器监听哪个端口？", "How do I merge a LoRA adapter with XTuner?"]
    r = huixiangdou.run(docs, qs, run_dir=tmp_path / "hxd", show=False)
    text = r.config_path.read_text(encoding="utf-8")
    assert 'remote_type = "vllm"' in text and "enable_web_search = 0" in text
    assert any((tmp_path / "hxd" / "workdir").glob("db_*"))
    assert [row["question"] for row in r.rows] == qs
    refs = [ref for row in r.rows for ref in row["references"]]
    assert refs and set(refs) <= {p.name for p in docs.iterdir()}
