"""The knowledge base: documents → passages → vectors + words, searched densely, by BM25 or both, and asked.

    kb = camp.rag.build("assets/corpus", name="course")     # load, chunk, embed (progress bar), index
    kb.search("显存不够怎么办", k=3)                          # passages with file, line span and scores
    kb.ask("LMDeploy 默认用哪个端口？", model=endpoint)        # a grounded answer with its sources, over any endpoint
    kb.add("my_notes.md")                                    # incremental: only this file is embedded

A knowledge base is a folder under $CAMP_HOME/rag/<name>/ — `kb.json` (embedding, chunk size, every file with its
hash and its passages), `chunks.jsonl` (passage text, source, lines, BM25 words), `vectors.npy` — written whole or
not at all (camp.runtime.markers). Building again with the same name updates it: unchanged files keep their vectors,
changed and new files are embedded, files no longer given are dropped.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camp.rag import chunking, documents, embeddings
from camp.rag import index as ix
from camp.runtime import config, markers, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.markers import sha256_file as _sha256

KIND = "rag-kb"
FORMAT = 1
DEFAULT_K = 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The prompt a model gets: the passages, numbered, then the question. The RAG traces (camp.rag.traces) teach the
# tiny model exactly this layout, so it must not change without retraining.
SYSTEM = "根据资料回答问题。"
CONTEXT_HEADER = "资料："
QUESTION_HEADER = "问题："


def prompt_messages(question: str, passages, *, system: str | None = SYSTEM) -> list[dict]:
    """The chat messages that ask `question` with `passages` (Passage objects or plain strings) as context."""
    parts = [CONTEXT_HEADER]
    for i, p in enumerate(passages, 1):
        text = p if isinstance(p, str) else p.text
        parts.append(f"[{i}] {text}")
    parts.append(f"{QUESTION_HEADER}{question}")
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": "\n".join(parts)}]


def plain_messages(question: str, *, system: str | None = SYSTEM) -> list[dict]:
    """The same question without retrieval (for the with/without comparison)."""
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": f"{QUESTION_HEADER}{question}"}]


# ============================================================================================ results
@dataclass
class Passage:
    """A retrieved passage: text, where it comes from, and how it ranked."""

    text: str
    source: str  # the file, relative to the folder the knowledge base was built from
    start: int
    end: int
    page: int | None = None
    section: str = ""
    score: float = 0.0  # the mode's score: cosine (dense), BM25, or the fused 0–1 score (hybrid)
    rank: int = 0
    id: int = -1
    path: str = ""  # the file's absolute path
    scores: dict = field(default_factory=dict)  # each retriever's rank for it (1-based), when it ranked it

    @property
    def where(self) -> str:
        lines = f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.source}{f' p.{self.page}' if self.page else ''}:{lines}"

    def to_dict(self) -> dict:
        return {**asdict(self), "where": self.where}


class Hits(list):
    """The passages a search returned, best first; `.frame()` as a DataFrame; shows as a table in JupyterLab."""

    def __init__(self, items=(), *, query: str = "", mode: str = "hybrid"):
        super().__init__(items)
        self.query, self.mode = query, mode

    @property
    def sources(self) -> list[str]:
        return [p.where for p in self]

    def frame(self):
        import pandas as pd

        return pd.DataFrame([{"rank": p.rank, "where": p.where, "score": round(p.score, 4), "text": p.text}
                             for p in self])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{p.rank}</td><td><code>{html.escape(p.where)}</code></td><td>{p.score:.3f}</td>"
            f"<td style='text-align:left;white-space:pre-wrap'>{html.escape(p.text[:400])}</td></tr>" for p in self)
        return (f"<div><b>{html.escape(self.mode)}</b>: {html.escape(self.query)}<table><tr><th>#</th>"
                f"<th>{t('来源', 'source')}</th><th>{t('分数', 'score')}</th><th>{t('段落', 'passage')}</th></tr>"
                f"{rows}</table></div>")


@dataclass
class Answer:
    """A grounded answer: the model's text, the passages it was given and their sources."""

    question: str
    text: str
    passages: list
    messages: list
    model: str = ""

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(p.where for p in self.passages))

    def with_sources(self) -> str:
        """The answer followed by a sources line, as a chat shows it."""
        return f"{self.text.strip()}\n\n{t('来源', 'Sources')}: " + "; ".join(self.sources)

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.text, "sources": self.sources, "model": self.model,
                "passages": [p.to_dict() for p in self.passages]}

    def __str__(self) -> str:
        return self.with_sources()

    def _repr_html_(self) -> str:
        items = "".join(f"<li><code>{html.escape(p.where)}</code> {html.escape(p.text[:160])}…</li>"
                        for p in self.passages)
        return (f"<div><b>{html.escape(self.question)}</b><p style='white-space:pre-wrap'>{html.escape(self.text)}"
                f"</p><small>{t('来源', 'Sources')}:</small><ol>{items}</ol></div>")


# ============================================================================================ the knowledge base
def home() -> Path:
    return config.home() / "rag"


def folder_of(name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CampError(f"knowledge base name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), e.g. "
                        "'course'")
    return home() / name


def _display_names(files: list[Path], roots: dict[Path, Path]) -> dict[Path, str]:
    """How passages name their file: the path relative to the folder it was found in (or its name), unique."""
    names = {f: (f.relative_to(roots[f]).as_posix() if roots.get(f) else f.name) for f in files}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {f: (n if counts[n] == 1 else str(f)) for f, n in names.items()}


class KnowledgeBase:
    """A built knowledge base (see the module doc). Get one with `build()`, `load()` or `open_()`."""

    def __init__(self, folder: Path, meta: dict, chunks: list[dict], vectors):
        self.folder = Path(folder)
        self.meta = meta
        self.chunks = chunks  # dicts: text, source, path, start, end, page, section, tokens
        self.vectors = vectors
        self.skipped: list[documents.Skipped] = [documents.Skipped(Path(p), r) for p, r in meta.get("skipped", [])]
        self.changes: dict = meta.get("changes", {})
        self._dense = self._bm25 = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def embedding(self) -> str:
        """The id of the embedding the vectors were made with."""
        return self.meta["embedding"]

    @property
    def chunk_size(self) -> int:
        return self.meta["chunk_size"]

    @property
    def files(self) -> dict:
        return self.meta["files"]

    def __len__(self) -> int:
        return len(self.chunks)

    def __repr__(self) -> str:
        return (f"<KnowledgeBase {self.name!r}: {len(self.files)} files, {len(self)} passages, {self.embedding}, "
                f"{self.folder}>")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{html.escape(v['source'])}</code></td><td>{v['chunks'][1] - v['chunks'][0]}"
                       f"</td></tr>" for v in self.files.values())
        skipped = "".join(f"<li><code>{html.escape(str(s.path))}</code>: {html.escape(s.reason)}</li>"
                          for s in self.skipped)
        ch = self.changes
        change = ", ".join(f"{k} {len(v)}" for k, v in ch.items() if v) if ch else ""
        return (f"<div><b>{t('知识库', 'knowledge base')} {html.escape(self.name)}</b>: {len(self.files)} "
                f"{t('个文件', 'files')}, {len(self)} {t('个段落', 'passages')}, <code>{html.escape(self.embedding)}"
                f"</code>{f' ({html.escape(change)})' if change else ''}<table><tr><th>{t('文件', 'file')}</th>"
                f"<th>{t('段落数', 'passages')}</th></tr>{rows}</table>"
                + (f"<small>{t('跳过的文件', 'skipped files')}:</small><ul>{skipped}</ul>" if skipped else "")
                + "</div>")

    def passage(self, i: int, score: float = 0.0, rank: int = 0, scores: dict | None = None) -> Passage:
        c = self.chunks[i]
        return Passage(c["text"], c["source"], c["start"], c["end"], c.get("page"), c.get("section", ""), score,
                       rank, i, c.get("path", ""), dict(scores or {}))

    # ------------------------------------------------------------------ search
    def _indexes(self):
        with self._lock:
            if self._dense is None:
                self._dense = ix.DenseIndex(self.vectors)
                self._bm25 = ix.BM25Index([c["tokens"] for c in self.chunks])
        return self._dense, self._bm25

    def _embedder(self, embedding=None) -> embeddings.Embedding:
        emb = embeddings.get(embedding or self.embedding.split("-")[0])
        if emb.id != self.embedding:
            raise CampError(f"knowledge base {self.name!r} was built with the embedding {self.embedding}; this query "
                            f"uses {emb.id} — vectors of two models cannot be compared. Query with {self.embedding}, "
                            f"or rebuild it: camp rag build … --name {self.name} --rebuild")
        return emb

    def rankings(self, query: str, depth: int, embedding=None, modes=("dense", "bm25")
                 ) -> dict[str, list[tuple[int, float]]]:
        """The rankings [(passage id, score)] of the retrievers in `modes` for `query`, `depth` deep."""
        if not isinstance(query, str) or not query.strip():
            raise CampError("the query is empty — ask a question or give some keywords")
        dense, bm25 = self._indexes()
        out = {}
        if "dense" in modes:
            out["dense"] = dense.search(self._embedder(embedding).encode([query])[0], depth)
        if "bm25" in modes:
            out["bm25"] = bm25.search(ix.tokenize(query), depth)
        return out

    def search(self, query: str, k: int = DEFAULT_K, *, mode: str = "hybrid", embedding=None) -> Hits:
        """The k best passages for `query`: mode "hybrid" (default), "dense" or "bm25"."""
        mode = ix.check_mode(mode)
        if not isinstance(k, int) or k < 1:
            raise CampError(f"k must be a whole number ≥ 1, not {k!r}")
        depth = max(4 * k, ix.HYBRID_DEPTH)
        if embedding is not None or mode != "bm25":
            self._embedder(embedding)  # a query embedded with another model is refused whatever the mode
        ranks = self.rankings(query, depth, embedding, ("dense", "bm25") if mode == "hybrid" else (mode,))
        ranked = ix.fuse([ranks["dense"], ranks["bm25"]], k) if mode == "hybrid" else ranks[mode][:k]
        positions = {m: {i: r for r, (i, _) in enumerate(ranks[m], 1)} for m in ranks}
        out = [self.passage(i, s, r, {m: positions[m][i] for m in positions if i in positions[m]})
               for r, (i, s) in enumerate(ranked, 1)]
        return Hits(out, query=query, mode=mode)

    # ------------------------------------------------------------------ ask
    def ask(self, question: str, model=None, *, k: int = DEFAULT_K, mode: str = "hybrid", system: str | None = SYSTEM,
            max_new_tokens: int = 128, **gen) -> Answer:
        """Retrieve k passages, ask `model` (an endpoint URL 'http://…/v1#name', an Endpoint, a Client, or a model
        name camp serves) with them as context, and return the answer with its sources."""
        from camp.rag.endpoint import upstream_client

        hits = self.search(question, k, mode=mode)
        msgs = prompt_messages(question, hits, system=system)
        client = upstream_client(model)
        text = client.chat(msgs, max_new_tokens=max_new_tokens, **{"do_sample": False, **gen})
        return Answer(question, text.strip(), list(hits), msgs, client.model)

    # ------------------------------------------------------------------ change
    def add(self, sources, *, show=True) -> KnowledgeBase:
        """Add or update files (a folder, a file or a list): only new or changed files are embedded."""
        kept = [Path(v["path"]) for v in self.files.values()]
        roots = {Path(v["path"]): Path(v["root"]) if v.get("root") else None for v in self.files.values()}
        return _build(self.name, kept, sources, roots=roots, embedding=self.embedding.split("-")[0],
                      chunk_size=self.chunk_size, show=show, replace=True)

    def remove(self, *paths) -> KnowledgeBase:
        """Drop files (by path or by the source name passages show)."""
        gone = {str(Path(p).expanduser().resolve()) for p in paths} | {str(p) for p in paths}
        keep = [Path(v["path"]) for v in self.files.values() if v["path"] not in gone and v["source"] not in gone]
        if len(keep) == len(self.files):
            raise CampError(f"none of {list(paths)} is in knowledge base {self.name!r}: it holds "
                            f"{', '.join(v['source'] for v in self.files.values())}")
        roots = {Path(v["path"]): Path(v["root"]) if v.get("root") else None for v in self.files.values()}
        return _build(self.name, keep, [], roots=roots, embedding=self.embedding.split("-")[0],
                      chunk_size=self.chunk_size, show=False, replace=True)

    def serve(self, model, **kw):
        """This knowledge base as an OpenAI-compatible endpoint in front of `model` (camp.rag.serve)."""
        from camp.rag.endpoint import serve

        return serve(self, model, **kw)


# ============================================================================================ build / load
def load(name_or_folder) -> KnowledgeBase:
    """A built knowledge base, by name or folder."""
    import numpy as np

    s = str(name_or_folder)
    folder = Path(s).expanduser() if ("/" in s or os.sep in s) else folder_of(s)
    if not markers.is_complete(folder, KIND):
        raise CampError(f"no knowledge base at {folder} — build it first: camp rag build FOLDER --name "
                        f"{folder.name}")
    meta = json.loads((folder / "kb.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise CampError(f"{folder} was written by another camp version (format {meta.get('format')}) — rebuild it")
    chunks = [json.loads(line) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
    vectors = np.load(folder / "vectors.npy")
    return KnowledgeBase(folder, meta, chunks, vectors)


def exists(name: str) -> bool:
    return markers.is_complete(folder_of(name), KIND)


def build(sources, name: str = "default", *, embedding: str = "auto", chunk_size: int = chunking.DEFAULT_SIZE,
          rebuild: bool = False, show=True) -> KnowledgeBase:
    """Build (or update) the knowledge base `name` from `sources`: a folder, a file, or a list of them.

    Files camp cannot read are skipped and listed (`kb.skipped`); an existing knowledge base of that name is updated
    incrementally (`kb.changes` says what was added, updated, kept and removed). A different embedding or chunk size
    than the existing one's is refused unless rebuild=True."""
    return _build(name, [], sources, roots={}, embedding=embedding, chunk_size=chunk_size, show=show,
                  replace=True, rebuild=rebuild)


def _build(name, kept: list[Path], sources, *, roots: dict, embedding, chunk_size, show, replace,
           rebuild=False) -> KnowledgeBase:
    import numpy as np

    view = progress.get(show)
    folder = folder_of(name)
    if not isinstance(chunk_size, int) or chunk_size < chunking.MIN_SIZE:
        raise CampError(f"chunk_size must be a whole number ≥ {chunking.MIN_SIZE}, not {chunk_size!r}")
    # 1. which files
    src_list = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources or [])
    new_files, skipped = documents.collect(src_list) if src_list else ([], [])
    for s in src_list:
        p = Path(s).expanduser()
        if p.is_dir():
            for f in new_files:
                if f.is_relative_to(p.resolve()):
                    roots[f] = p.resolve()
    files = list(dict.fromkeys([*kept, *new_files]))
    ok, unreadable = documents.readable(files)
    skipped += unreadable
    if not ok:
        what = ", ".join(str(s) for s in src_list) or "(nothing)"
        listed = "".join(f"\n  skipped {s}" for s in skipped[:10])
        raise CampError(f"no readable documents in {what} — camp reads {', '.join(sorted(documents.TYPES))}"
                        f"{listed}")
    emb = embeddings.get(embedding)
    # 2. what is already embedded
    old = None
    if markers.is_complete(folder, KIND):
        old = load(folder)
        if not rebuild and (old.embedding != emb.id or old.chunk_size != chunk_size):
            raise CampError(f"knowledge base {name!r} was built with {old.embedding}, chunk size {old.chunk_size}; "
                            f"this build asks for {emb.id}, chunk size {chunk_size} — passages of both cannot be "
                            f"searched together. Rebuild it whole (rebuild=True / --rebuild) or use another name")
        if rebuild:
            old = None
    names = _display_names(ok, roots)
    old_by_path = {v["path"]: v for v in old.files.values()} if old else {}
    meta_files: dict[str, dict] = {}
    chunks: list[dict] = []
    vec_parts: list = []
    todo: list[tuple[Path, str]] = []
    changes = {"added": [], "updated": [], "unchanged": [], "removed": []}
    for f in ok:
        sha = _sha256(f)
        prev = old_by_path.get(str(f))
        if prev and prev["sha256"] == sha:
            a, b = prev["chunks"]
            start = len(chunks)
            for c in old.chunks[a:b]:
                chunks.append({**c, "source": names[f]})
            vec_parts.append(old.vectors[a:b])
            meta_files[str(f)] = {**prev, "source": names[f], "chunks": [start, len(chunks)],
                                  "root": str(roots[f]) if roots.get(f) else prev.get("root")}
            changes["unchanged"].append(names[f])
        else:
            todo.append((f, sha))
            changes["updated" if prev else "added"].append(names[f])
    if old:
        changes["removed"] = [v["source"] for p, v in old_by_path.items() if Path(p) not in set(ok)]
        if not todo and not changes["removed"] and [str(f) for f in ok] == list(old.files):
            old.changes = changes  # nothing to write: the knowledge base on disk is current
            old.skipped = skipped
            return old
    # 3. chunk and embed what changed
    fresh: list[dict] = []
    fresh_files: list[tuple[Path, str, int, int]] = []
    for f, sha in todo:
        start = len(fresh)
        try:
            for c in chunking.chunk_lines(documents.lines(f), source=names[f], size=chunk_size):
                fresh.append({**c.to_dict(), "path": str(f)})
        except CampError as exc:  # a file that turned out unreadable half-way (a broken PDF page)
            del fresh[start:]
            skipped.append(documents.Skipped(f, str(exc).split(": ", 1)[-1]))
            for key in ("added", "updated"):
                if names[f] in changes[key]:
                    changes[key].remove(names[f])
            continue
        fresh_files.append((f, sha, start, len(fresh)))
    if fresh:
        view.say(t(f"知识库 {name}：嵌入 {len(fresh)} 个新段落（{emb.id}），保留 {len(chunks)} 个已有段落",
                   f"knowledge base {name}: embedding {len(fresh)} new passages ({emb.id}), keeping {len(chunks)}"))
        vecs = embeddings.encode_all(emb, [_embed_text(c) for c in fresh], view=view,
                                     desc=t("嵌入段落", "embedding passages"))
        tokens_view = None if len(fresh) < 2000 else view
        toks = _tokenize_all([_embed_text(c) for c in fresh], tokens_view)
        base = len(chunks)
        for c, tk in zip(fresh, toks, strict=True):
            chunks.append({**c, "tokens": tk})
        vec_parts.append(vecs)
        for f, sha, a, b in fresh_files:
            st = f.stat()
            meta_files[str(f)] = {"path": str(f), "source": names[f], "sha256": sha, "bytes": st.st_size,
                                  "type": documents.kind(f), "chunks": [base + a, base + b],
                                  "root": str(roots[f]) if roots.get(f) else None}
    if not chunks:
        raise CampError(f"the documents of {name!r} hold no text to index"
                        + "".join(f"\n  skipped {s}" for s in skipped[:10]))
    vectors = np.concatenate(vec_parts).astype(np.float32) if vec_parts else np.zeros((0, emb.dim), np.float32)
    meta = {"format": FORMAT, "name": name, "embedding": emb.id, "dim": emb.dim, "chunk_size": chunk_size,
            "files": meta_files, "skipped": [[str(s.path), s.reason] for s in skipped], "changes": changes,
            "passages": len(chunks)}
    with markers.building(folder, replace=replace) as tmp:
        (tmp / "kb.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as out:
            for c in chunks:
                out.write(json.dumps(c, ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", vectors)
        markers.mark(tmp, KIND, embedding=emb.id, passages=len(chunks))
    for s in skipped:
        view.say(t(f"跳过 {s.path}：{s.reason}", f"skipped {s.path}: {s.reason}"))
    return KnowledgeBase(folder, meta, chunks, vectors)


def _embed_text(c: dict) -> str:
    """What gets embedded and indexed: the document's title and the section heading with the passage (a passage
    rarely repeats what its document is about: "它需要 CUDA" says nothing of LMDeploy without its title)."""
    head = [h for h in dict.fromkeys([c.get("title") or "", c.get("section") or ""]) if h and h not in c["text"]]
    return "\n".join([*head, c["text"]])


def _tokenize_all(texts: list[str], view) -> list[list[str]]:
    if view is None:
        return [ix.tokenize(x) for x in texts]

    def work(task):
        out = []
        for i, x in enumerate(texts):
            out.append(ix.tokenize(x))
            if i % 200 == 0:
                task.progress.update(n=i)
        return out

    return embeddings.Task(t("切词", "tokenizing"), total=len(texts), unit="passage").run_with(work, view)


def course_kb(folder=None, *, show=False) -> KnowledgeBase:
    """The course documents (assets/corpus, or `folder`) as the knowledge base "course" (built once, then kept
    current: unchanged files are not embedded again). What the agents' CourseSearch tool searches."""
    src = Path(folder) if folder else config.assets_dir() / "corpus"
    name = "course" if folder is None else "course-" + hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:10]
    return build(src, name=name, show=show)
