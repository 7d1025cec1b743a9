"""The two retrievers and their combination.

- dense: cosine similarity of embedding vectors (faiss `IndexFlatIP` over unit vectors: exact search). Finds
  paraphrases and other languages — "显存不够怎么办" reaches "--cache-max-entry-count …".
- BM25: word statistics (rank_bm25's Okapi BM25), words cut by jieba so Chinese has words at all. Finds exact
  names, numbers and commands that an embedding blurs ("23333", "auto_awq").
- hybrid: both scores scaled to 0–1 for this query (min–max over each retriever's candidates) and averaged: a
  passage ranked well by either comes up, one ranked well by both comes first. On the course QA set this beat
  reciprocal rank fusion, which throws away how far ahead the best passage is (benchmarks/rag_bench.py, lesson 08).

Both indexes are rebuilt in memory from the knowledge base's stored vectors and tokens in well under a second for
thousands of passages, so adding a file means re-embedding that file only.
"""

from __future__ import annotations

import logging
import re
import threading

from camp.runtime.errors import CampError

MODES = ("dense", "bm25", "hybrid")
HYBRID_DEPTH = 50  # candidates each retriever hands to the fusion
_WORDISH = re.compile(r"\w", re.UNICODE)
_jieba_lock = threading.Lock()
_jieba = None


def _cutter():
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            try:
                import jieba
            except ImportError as exc:
                raise CampError("jieba is not installed in this environment — it belongs to the core env: "
                                "`camp env create core`") from exc
            jieba.setLogLevel(logging.WARNING)  # it announces its dictionary loading on every start
            jieba.initialize()
            _jieba = jieba
    return _jieba


def tokenize(text: str) -> list[str]:
    """Words for BM25: jieba's search-mode cut (long Chinese words also as their shorter parts), lower-cased, with
    punctuation and spaces dropped. English words, numbers and `--flags` stay whole."""
    words = _cutter().cut_for_search(text.lower())
    return [w for w in (w.strip() for w in words) if w and _WORDISH.search(w)]


class DenseIndex:
    """Exact inner-product search over unit vectors (faiss)."""

    def __init__(self, vectors):
        try:
            import faiss
        except ImportError as exc:
            raise CampError("faiss is not installed in this environment — it belongs to the core env (faiss-cpu): "
                            "`camp env create core`") from exc
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[0] else 0
        self.index = faiss.IndexFlatIP(self.dim or 1)
        if len(vectors):
            self.index.add(vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, qvec, k: int) -> list[tuple[int, float]]:
        import numpy as np

        k = min(k, len(self))
        if k <= 0:
            return []
        scores, ids = self.index.search(np.ascontiguousarray(qvec, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


class BM25Index:
    """Okapi BM25 over pre-tokenized passages (rank_bm25)."""

    def __init__(self, tokens: list[list[str]]):
        try:
            from rank_bm25 import BM25Okapi
        except ImportError as exc:
            raise CampError("rank_bm25 is not installed in this environment — it belongs to the core env: "
                            "`camp env create core`") from exc
        self.n = len(tokens)
        # BM25Okapi divides by the average length: an empty corpus (or one of empty passages) has none
        self.bm25 = BM25Okapi([t or ["∅"] for t in tokens]) if self.n else None

    def __len__(self) -> int:
        return self.n

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        import numpy as np

        if not self.n or not query_tokens:
            return []
        scores = self.bm25.get_scores(query_tokens)
        k = min(k, self.n)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


def fuse(rankings: list[list[tuple[int, float]]], k: int, weights: list[float] | None = None
         ) -> list[tuple[int, float]]:
    """Fuse several rankings [(id, score)]: each retriever's scores min–max scaled to 0–1 over its candidates (a
    passage it did not return counts 0), then the weighted mean (default: equal weights) → the k best (id, score)."""
    weights = weights or [1.0 / len(rankings)] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        if not ranking:
            continue
        scores = [s for _, s in ranking]
        lo, hi = min(scores), max(scores)
        span = hi - lo
        for i, s in ranking:
            fused[i] = fused.get(i, 0.0) + w * ((s - lo) / span if span > 0 else 1.0)
    return sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:k]


def check_mode(mode: str) -> str:
    m = (mode or "hybrid").strip().lower()
    if m not in MODES:
        raise CampError(f"unknown retrieval mode {mode!r} — choose one of {', '.join(MODES)}")
    return m
