"""Reading a knowledge base's documents: Markdown, plain text, HTML and PDF, each as lines that remember where they
came from (file, line, PDF page), so every retrieved passage can cite its source.

A file that cannot be read as one of these (a binary file, an unknown type, a broken PDF, bad encoding) is skipped
and listed with the reason — one bad file never stops a knowledge base from being built. Text files are read line
by line (a huge file is never held in memory at once); PDFs page by page.
"""

from __future__ import annotations

import html.parser
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from camp.runtime.errors import CampError

TEXT_TYPES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".rst": "text"}
HTML_TYPES = {".html": "html", ".htm": "html"}
PDF_TYPES = {".pdf": "pdf"}
TYPES = {**TEXT_TYPES, **HTML_TYPES, **PDF_TYPES}
_SNIFF = 8192  # bytes read to tell text from binary


@dataclass(frozen=True)
class Line:
    """One line of a document's text: `text` (no newline), its 1-based `line` number in the file (for a PDF: in
    the page's extracted text) and `page` (PDF only)."""

    text: str
    line: int
    page: int | None = None


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def kind(path: Path) -> str | None:
    """'markdown', 'text', 'html', 'pdf', or None for a type camp does not read."""
    return TYPES.get(path.suffix.lower())


def collect(sources) -> tuple[list[Path], list[Skipped]]:
    """The files to read from `sources` (a folder, a file, or a list of them; folders are walked, hidden files and
    folders left out), sorted, and the files skipped because of their type. Raises CampError for a path that does
    not exist, and when nothing readable is found."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    skipped: list[Skipped] = []
    for src in sources:
        p = Path(src).expanduser()
        if not p.exists():
            raise CampError(f"{p} does not exist — give a folder of documents or the files themselves")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            found = [p]
        for f in found:
            if kind(f) is None:
                skipped.append(Skipped(f, f"unsupported type {f.suffix or '(no suffix)'} — camp reads "
                                          f"{', '.join(sorted(TYPES))}"))
            else:
                files.append(f.resolve())
    files = sorted(dict.fromkeys(files))
    return files, skipped


def _binary(head: bytes) -> bool:
    if b"\0" in head:
        return True
    # many control characters (not tab/newline/CR/formfeed/ESC) mean binary data, not text
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return len(head) > 0 and ctrl / len(head) > 0.05


def _encoding(path: Path) -> str:
    """utf-8 (with or without BOM), else GB18030 (Chinese documents saved on Windows); CampError when neither
    decodes the whole file."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            with open(path, encoding=enc) as f:
                for _ in f:
                    pass
            return enc
        except UnicodeDecodeError:
            continue
    raise CampError("not UTF-8 or GB18030 text")


def check_readable(path: Path) -> str | None:
    """Why `path` cannot be read as a document, or None."""
    k = kind(path)
    if k is None:
        return f"unsupported type {path.suffix}"
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError as exc:
        return f"cannot open it ({exc.strerror or exc})"
    if k == "pdf":
        return None if head.startswith(b"%PDF") else "not a PDF (no %PDF header)"
    if _binary(head):
        return "binary data, not text"
    try:
        _encoding(path)
    except CampError as exc:
        return str(exc)
    return None


def lines(path: Path) -> Iterator[Line]:
    """The document's text, line by line. Raises CampError when it cannot be read (see check_readable)."""
    path = Path(path)
    why = check_readable(path)
    if why:
        raise CampError(f"{path}: {why}")
    k = kind(path)
    if k in ("markdown", "text"):
        yield from _text_lines(path)
    elif k == "html":
        yield from _html_lines(path)
    else:
        yield from _pdf_lines(path)


def _text_lines(path: Path) -> Iterator[Line]:
    with open(path, encoding=_encoding(path), errors="strict") as f:
        for n, raw in enumerate(f, 1):
            yield Line(raw.rstrip("\r\n"), n)


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page, with the source line each piece starts on; scripts and styles dropped,
    block elements end a line, headings become Markdown headings (chunking keeps sections together)."""

    BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol", "hr",
              "h1", "h2", "h3", "h4", "h5", "h6", "title"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[Line] = []
        self._buf: list[str] = []
        self._line = 1
        self._hidden = 0
        self._heading = 0
        self._title = False

    def _flush(self):
        text = " ".join("".join(self._buf).split())
        if text:
            prefix = "#" * self._heading + " " if self._heading else ""
            self.out.append(Line(prefix + text, self._line))
        self._buf = []

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN and not (tag == "head"):
            self._hidden += 1
        if tag == "title":
            self._title = True
            self._heading = 1  # the page title reads like its top heading
        if tag in self.BLOCKS:
            self._flush()
            if tag == "p":
                self.out.append(Line("", self.getpos()[0]))  # a paragraph break
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._heading = int(tag[1])

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and tag != "head" and self._hidden:
            self._hidden -= 1
        if tag in self.BLOCKS:
            self._flush()
            if tag.startswith("h") and len(tag) == 2 and tag[1].isdigit():
                self._heading = 0
                self.out.append(Line("", self.getpos()[0]))
        if tag == "title":
            self._title = False
            self._heading = 0

    def handle_data(self, data):
        if self._hidden:
            return
        if not self._buf:
            self._line = self.getpos()[0]
        self._buf.append(data)

    def close(self):
        super().close()
        self._flush()


def _html_lines(path: Path) -> Iterator[Line]:
    parser = _HTMLText()
    with open(path, encoding=_encoding(path)) as f:
        for raw in f:
            parser.feed(raw)
            yield from parser.out
            parser.out = []
    parser.close()
    yield from parser.out


def _pdf_lines(path: Path) -> Iterator[Line]:
    try:
        import pypdf
    except ImportError as exc:
        raise CampError("reading PDFs needs pypdf in the core env: `camp env create core`") from exc
    try:
        reader = pypdf.PdfReader(str(path))
        pages = reader.pages
        n = len(pages)
    except Exception as exc:  # pypdf raises many types for broken files
        raise CampError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    got_text = False
    for i in range(n):
        try:
            text = pages[i].extract_text() or ""
        except Exception as exc:
            raise CampError(f"{path}: page {i + 1} cannot be read ({type(exc).__name__}: {exc})") from exc
        for j, raw in enumerate(text.splitlines(), 1):
            got_text = got_text or bool(raw.strip())
            yield Line(raw.rstrip(), j, page=i + 1)
        yield Line("", 0, page=i + 1)  # a page ends a paragraph
    if not got_text:
        raise CampError(f"{path}: the PDF has no text layer (a scan?) — convert it first, e.g. with MinerU's OCR")


def read_text(path: Path) -> str:
    """The whole document as text (for small files; chunking streams `lines()` instead)."""
    return "\n".join(x.text for x in lines(path))


def readable(files: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """(files that can be read, files skipped with the reason)."""
    ok, bad = [], []
    for f in files:
        why = check_readable(f)
        (bad.append(Skipped(f, why)) if why else ok.append(f))
    return ok, bad
