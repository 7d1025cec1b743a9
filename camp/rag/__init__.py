"""RAG: knowledge bases over your documents — load (md/txt/html/pdf), chunk, embed offline, index (dense + BM25 +
hybrid), search with sources, ask any endpoint with the passages as context, serve as an OpenAI-compatible endpoint;
the real tools (LlamaIndex, HuixiangDou) in their own envs; the traces that teach a small model to use its context.

    kb = camp.rag.build("assets/corpus", name="course")
    kb.search("显存不够怎么办"); kb.ask("LMDeploy 默认端口？", model=endpoint); camp.rag.serve(kb, endpoint)
"""

from camp.rag import huixiangdou, llamaindex, traces  # the tool stages and the traces, as camp.rag.<module>
from camp.rag.endpoint import serve, upstream_client
from camp.rag.evaluation import RetrievalReport, evaluate_retrieval, load_qa
from camp.rag.kb import Answer, Hits, KnowledgeBase, Passage, build, course_kb, exists, load, prompt_messages

__all__ = ["Answer", "Hits", "KnowledgeBase", "Passage", "RetrievalReport", "build", "course_kb", "evaluate_retrieval",
           "exists", "huixiangdou", "llamaindex", "load", "load_qa", "prompt_messages", "serve", "traces",
           "upstream_client"]
