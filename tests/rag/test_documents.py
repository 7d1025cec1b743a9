"""Reading documents (md, txt, html, pdf) with their line spans; skipping what cannot be read; chunking."""

from __future__ import annotations

import pytest

from camp.rag import chunking, documents
from camp.runtime.errors import CampError
from tests.conftest import ROOT
from tests.rag.helpers import write_pdf


def _chunks(path, size=300):
    return list(chunking.chunk_lines(documents.lines(path), source=path.name, size=size))


def test_markdown_passages_keep_their_lines_and_sections():
    path = ROOT / "assets/corpus/05_lmdeploy.md"
    src = path.read_text(encoding="utf-8").splitlines()
    chunks = _chunks(path)
    assert len(chunks) >= 4 and all(len(c.text) <= 300 + 40 for c in chunks)
    for c in chunks:  # every passage's words are on the lines it names
        span = "".join(src[c.start - 1:c.end]).replace(" ", "")
        last = c.text.splitlines()[-1].replace(" ", "")[-12:]
        assert last in span, (c.where, last)
    kv = next(c for c in chunks if "cache-max-entry-count" in c.text)
    assert kv.section == "量化" and src[kv.start - 1].lstrip("- ").startswith("`--cache-max-entry-count`")


def test_long_paragraph_is_cut_at_sentence_ends(tmp_path):
    sentences = [f"第{i}句话说的是数字 {i * 7}。" for i in range(60)]
    f = tmp_path / "long.txt"
    f.write_text("".join(sentences) + "\n", encoding="utf-8")
    chunks = _chunks(f, size=100)
    assert len(chunks) > 5 and all(len(c.text) <= 100 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == "".join(sentences)


def test_text_without_punctuation_is_cut_hard(tmp_path):
    f = tmp_path / "blob.txt"
    f.write_text("x" * 1000, encoding="utf-8")
    assert [len(c.text) for c in _chunks(f, size=300)] == [300, 300, 300, 100]


def test_html_visible_text_with_headings_and_lines(tmp_path):
    f = tmp_path / "page.html"
    f.write_text("<html><head><title>T</title><style>p{color:red}</style></head><body>\n"
                 "<h2>安装</h2>\n<p>运行 <code>pip install camp</code> 即可。</p>\n"
                 "<script>alert('no')</script>\n<p>第二段\n在这里。</p></body></html>\n", encoding="utf-8")
    chunks = _chunks(f)
    text = "\n".join(c.text for c in chunks)
    assert "pip install camp" in text and "第二段" in text
    assert "alert" not in text and "color:red" not in text
    assert chunks[0].section == "安装" and chunks[0].start == 2


def test_pdf_text_layer_with_page_and_lines(tmp_path):
    f = write_pdf(tmp_path / "doc.pdf", ["The Fog Harbour server listens on port 41877.", "Backups go to Marlowe."])
    lines = [x for x in documents.lines(f) if x.text.strip()]
    assert [x.page for x in lines] == [1, 1]
    assert "41877" in lines[0].text and "Marlowe" in lines[1].text
    (c,) = _chunks(f)
    assert c.page == 1 and c.where == "doc.pdf p.1:1-2"


def test_unreadable_files_are_listed_with_the_reason(tmp_path):
    (tmp_path / "ok.md").write_text("# ok\nfine\n", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "fake.pdf").write_text("not a pdf", encoding="utf-8")
    (tmp_path / "bad.md").write_bytes("中文".encode() + b"\xff\xfe\xfa")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / ".hidden.md").write_text("secret", encoding="utf-8")
    files, skipped = documents.collect(tmp_path)
    ok, bad = documents.readable(files)
    assert [f.name for f in ok] == ["ok.md"]
    reasons = {s.path.name: s.reason for s in [*skipped, *bad]}
    assert set(reasons) == {"blob.txt", "fake.pdf", "bad.md", "image.png"}
    assert "binary" in reasons["blob.txt"] and "PDF" in reasons["fake.pdf"]
    assert "UTF-8" in reasons["bad.md"] and "unsupported type .png" in reasons["image.png"]


def test_gb18030_text_is_read(tmp_path):
    f = tmp_path / "gbk.txt"
    f.write_bytes("书生浦语的知识库。".encode("gb18030"))
    assert documents.read_text(f) == "书生浦语的知识库。"


def test_missing_path_and_bad_chunk_size_are_refused(tmp_path):
    with pytest.raises(CampError, match="does not exist"):
        documents.collect(tmp_path / "nope")
    with pytest.raises(CampError, match="chunk size"):
        list(chunking.chunk_lines([], source="x", size=5))
