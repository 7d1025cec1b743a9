"""Chunking: a document's lines → passages of about `size` characters that keep paragraphs whole when they fit,
split long ones at sentence ends, start a new passage at every heading and carry the section title along (a passage
that says "它需要 CUDA 显卡" is only findable with the heading that says what "它" is).

    for c in chunk_lines(documents.lines(path), source="notes.md", size=300):
        c.text, c.start, c.end, c.page, c.section

Streaming: lines go in one at a time and passages come out as soon as they are complete, so a huge file is chunked
in bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from camp.rag.documents import Line
from camp.runtime.errors import CampError

DEFAULT_SIZE = 300  # characters: ~150-300 tokens of Chinese/English, a few sentences; the lesson compares sizes
MIN_SIZE = 40
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
# sentence ends: Chinese full stops (no space needed after them), Western ones before whitespace
_SENTENCE = re.compile(r"(?<=[。！？；])|(?<=[.!?;])\s+")


@dataclass
class Chunk:
    """One passage: its text, the file it came from, the lines it spans (1-based, inclusive; for a PDF: lines of
    that page's text) and the section heading above it."""

    text: str
    source: str
    start: int
    end: int
    page: int | None = None
    section: str = ""
    title: str = ""  # the document's first heading: what the whole file is about

    @property
    def where(self) -> str:
        """'notes.md:12-15' or 'paper.pdf p.3:4-9'."""
        lines = f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"
        page = f" p.{self.page}" if self.page else ""
        return f"{self.source}{page}:{lines}"

    def to_dict(self) -> dict:
        return asdict(self)


def _paragraphs(lines: Iterable[Line]) -> Iterator[tuple[list[Line], str, bool]]:
    """(lines of one paragraph, the section it is in, whether it is a heading). Blank lines, headings and PDF pages
    end a paragraph; a fenced code block is one paragraph."""
    para: list[Line] = []
    section = ""
    fence = False
    for ln in lines:
        text = ln.text
        if text.strip().startswith("```"):
            fence = not fence
            para.append(ln)
            if not fence:
                yield para, section, False
                para = []
            continue
        if fence:
            para.append(ln)
            continue
        m = _HEADING.match(text)
        if m or not text.strip() or (para and ln.page != para[-1].page):
            if para:
                yield para, section, False
                para = []
            if m:
                section = m.group(2).strip("*# ")
                yield [ln], section, True
            elif text.strip():
                para.append(ln)
            continue
        para.append(ln)
    if para:
        yield para, section, False


def _pieces(para: list[Line], size: int) -> Iterator[tuple[str, int, int]]:
    """A paragraph as (text, first line, last line) pieces of at most `size` characters, cut at sentence ends (a
    sentence longer than size is cut hard)."""
    joined = _join([ln.text for ln in para])
    if len(joined) <= size:
        yield joined, para[0].line, para[-1].line
        return
    # where each line starts in the joined text, to give every sentence its lines
    starts, pos = [], 0
    for ln in para:
        t = ln.text.strip()
        if not t:
            continue
        found = joined.find(t[:20], pos)
        pos = found if found >= 0 else pos
        starts.append((pos, ln.line))

    def line_at(offset: int) -> int:
        line = starts[0][1]
        for p, n in starts:
            if p > offset:
                break
            line = n
        return line

    sentences: list[tuple[str, int, int]] = []
    pos = 0
    for part in _SENTENCE.split(joined):
        at = joined.find(part, pos) if part else pos
        if part and part.strip():
            lead = len(part) - len(part.lstrip())
            sentences.append((part.strip(), line_at(at + lead), line_at(at + len(part.rstrip()) - 1)))
        pos = max(pos, at + len(part or ""))
    buf, first, last = "", para[0].line, para[0].line
    for sent, a, b in sentences:
        while len(sent) > size:  # one very long sentence (or a line with no punctuation)
            if buf:
                yield buf, first, last
                buf = ""
            yield sent[:size], a, b
            sent = sent[size:]
        if buf and len(buf) + 1 + len(sent) > size:
            yield buf, first, last
            buf = ""
        if not buf:
            first = a
        buf = _join([buf, sent]) if buf else sent
        last = b
    if buf:
        yield buf, first, last


_ITEM = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|```|\|)")


def _join(parts: list[str]) -> str:
    """Join lines of one paragraph: list items, table rows and code stay on their own lines; wrapped prose is joined
    with no space between Chinese characters and one space between Western words."""
    out = ""
    for raw in parts:
        p = raw.strip()
        if not p:
            continue
        if out and (_ITEM.match(raw) or out.startswith("```")):
            out += "\n" + (raw.rstrip() if out.startswith("```") else p)
            continue
        if out and not (_cjk(out[-1]) and _cjk(p[0])):
            out += " "
        out += p
    return out


def _cjk(ch: str) -> bool:
    return "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"


def chunk_lines(lines: Iterable[Line], *, source: str, size: int = DEFAULT_SIZE) -> Iterator[Chunk]:
    """Passages of at most about `size` characters (a heading line is added in front of the first passage of its
    section). Paragraphs are packed together while they fit."""
    if not isinstance(size, int) or size < MIN_SIZE:
        raise CampError(f"chunk size must be a whole number of characters ≥ {MIN_SIZE}, not {size!r}")
    cur: Chunk | None = None
    heading: tuple[str, int] | None = None  # a heading waiting for its first passage
    title = ""

    def emit():
        nonlocal cur
        done, cur = cur, None
        return done

    for para, section, is_heading in _paragraphs(lines):
        if is_heading:
            if cur:
                yield emit()
            heading = (para[0].text.strip().lstrip("#").strip(), para[0].line)
            title = title or section
            continue
        for text, first, last in _pieces(para, size):
            page = para[0].page
            if cur and (len(cur.text) + 1 + len(text) > size or cur.page != page):
                yield emit()
            if cur is None:
                if heading:
                    text_h = f"{heading[0]}\n{text}"
                    cur = Chunk(text_h, source, heading[1], last, page, section, title)
                    heading = None
                else:
                    cur = Chunk(text, source, first, last, page, section, title)
            else:
                cur.text += "\n" + text
                cur.end = last
    if cur:
        yield emit()
    if heading:  # a heading with nothing under it still says something
        yield Chunk(heading[0], source, heading[1], heading[1], None, heading[0], title)
