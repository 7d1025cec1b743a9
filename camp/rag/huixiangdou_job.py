"""Run inside the huixiangdou env (`python huixiangdou_job.py job.json`): HuixiangDou's own retriever and pipeline
on questions, after its store was built (`python -m huixiangdou.services.store`). Must not import camp.

For every question: HuixiangDou's retriever (its faiss store, its reject threshold, its reranker) → the files it
would cite; with "pipeline": true also its SerialPipeline (intent → retrieval → answer) against the model endpoint
named in config.ini → its status code and reply. Writes answers.jsonl and prints `answered N/M`.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

# this file's folder (camp/rag) holds huixiangdou.py and llamaindex.py: off the path, or they shadow the tools
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


async def _pipeline(assistant, question):
    sess = None
    async for step in assistant.generate(query=question, history=[], groupname=""):
        sess = step  # the pipeline yields its session after each node; the last one holds the reply
    if sess is None:
        return "no session", "", []
    return str(sess.code), sess.response or "", list(sess.references or [])


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    config, work_dir = job["config"], job["work_dir"]
    from huixiangdou.services.retriever import CacheRetriever

    t0 = time.time()
    cache = CacheRetriever(config_path=config)
    retriever = cache.get(config_path=config, work_dir=work_dir)
    print(f"retriever ready in {time.time() - t0:.1f} s", flush=True)
    assistant = None
    if job.get("pipeline"):
        from huixiangdou.services import SerialPipeline

        assistant = SerialPipeline(work_dir=work_dir, config_path=config)
    out = Path(job["out"])
    with open(out, "w", encoding="utf-8") as f:
        for n, q in enumerate(job["questions"], 1):
            t1 = time.time()
            relative, score = retriever.is_relative(q)
            chunks, _context, refs, _texts = retriever.query(q)
            row = {"question": q, "relative": bool(relative), "score": float(score), "references": list(refs or []),
                   "chunks": (chunks or "")[:400]}
            if assistant is not None:
                code, reply, prefs = asyncio.run(_pipeline(assistant, q))
                row.update({"code": code, "reply": reply, "pipeline_references": prefs})
            row["seconds"] = round(time.time() - t1, 2)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            print(f"question {n}/{len(job['questions'])}: {row['references'][:2]} {row.get('code', '')}", flush=True)
    print(f"answered {len(job['questions'])}/{len(job['questions'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
