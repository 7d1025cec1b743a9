"""HuixiangDou (茴香豆), InternLM's RAG assistant for group chats, run for real in its own environment.

    r = camp.rag.huixiangdou.run("assets/corpus", ["LMDeploy 默认用哪个端口？"], model=endpoint)
    r.table       # per question: relevant or rejected, the files it cites, and (with a model) its pipeline's reply

camp writes what HuixiangDou reads — `config.ini` (the local embedding and reranker folders, the model's endpoint as
a `vllm`-type remote LLM, web search off), `resource/good_questions.json` / `bad_questions.json` (questions it should
answer and chit-chat it should refuse: its store build learns its reject threshold from them) and the documents in
`repodir/` — then runs, as Jobs in the `huixiangdou` env:
  1. `python -m huixiangdou.services.store` — its feature store (chunks, embeddings, faiss, reject threshold);
  2. camp/rag/huixiangdou_job.py — its retriever on each question and, with a model, its SerialPipeline.

Models. On GPU profiles the course's embedding and reranker (bce-embedding-base_v1, bce-reranker-base_v1) are
downloaded with camp.download. Offline (cpu-tiny) camp uses all-MiniLM-L6-v2 from a wheel as the embedding (an
English model: Chinese retrieval is weak) and, as the reranker, the same encoder with an untrained one-label head —
it runs, but its order means nothing. HuixiangDou's pipeline asks the model for an intent JSON first; a model that
cannot write it (the tiny one) gets no answer out: the store build and the retrieval are what cpu-tiny shows.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from camp.runtime import config, envs, markers
from camp.runtime.errors import CampError
from camp.runtime.stage import Stage, Step

HERE = Path(__file__).resolve().parent
GPU_MODELS = {"embedding": "maidalun/bce-embedding-base_v1", "reranker": "maidalun/bce-reranker-base_v1"}
CPU_MODELS_KIND = "huixiangdou-cpu-models"

GOOD = ["XTuner 怎么用 QLoRA 微调 7B 模型？", "LMDeploy 的 KV cache 量化怎么开启？", "OpenCompass 怎样评测一个模型？",
        "茴香豆是什么？", "Lagent 支持哪些智能体范式？", "书生万卷语料库有多大？", "How do I serve a model with LMDeploy?",
        "What is InternLM2?"]
BAD = ["今天中午吃什么？", "哈哈哈哈", "明天天气怎么样？", "大家早上好", "有人一起打球吗？", "谢谢大家",
       "What's for lunch?", "good morning everyone"]


def _toml(v) -> str:
    return json.dumps(v, ensure_ascii=False)  # a JSON string/number/list is valid TOML for these values


def config_ini(*, embedding: Path, reranker: Path, work_dir: Path, base_url: str, model: str, api_key: str | None,
               max_text_length: int = 4096, reject_throttle: float = -1.0) -> str:
    """HuixiangDou's config.ini (TOML) for local models and one OpenAI-compatible endpoint."""
    sections = {
        "feature_store": {"reject_throttle": reject_throttle, "embedding_model_path": str(embedding),
                          "reranker_model_path": str(reranker), "work_dir": str(work_dir)},
        "web_search": {"engine": "ddgs", "serper_x_api_key": "", "domain_partial_order": [],
                       "save_dir": "logs/web_search_result"},
        "llm": {"enable_local": 0, "enable_remote": 1, "client_url": "http://127.0.0.1:8888/inference"},
        "llm.server": {"local_llm_path": "", "local_llm_max_text_length": max_text_length,
                       "local_llm_bind_port": 8888, "remote_type": "vllm", "remote_api_key": api_key or "EMPTY",
                       "remote_llm_max_text_length": max_text_length + 4096, "remote_llm_model": model,
                       "base_url": base_url, "rpm": 500, "tpm": 100000},
        "coreference_resolution": {"base_url": base_url, "api_key": api_key or "EMPTY"},
        "worker": {"enable_web_search": 0, "enable_sg_search": 0, "enable_cr": 0, "save_path": "logs/work.txt"},
        "worker.time": {"enable": 0, "start": "00:00:00", "end": "23:59:59", "has_weekday": 1},
        "frontend": {"type": "none", "webhook_url": "", "message_process_policy": "immediate"},
    }
    out = ["# written by camp.rag.huixiangdou: HuixiangDou's settings for this run (edit and re-run by hand)"]
    for name, values in sections.items():
        out.append(f"\n[{name}]")
        out += [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def _tiktoken_cache() -> Path:
    """tiktoken encodings for HuixiangDou's token counting (it would download them): the copies LlamaIndex ships."""
    py = envs.ensure("llamaindex")
    hits = sorted(py.parent.parent.glob("lib/python*/site-packages/llama_index/core/_static/tiktoken_cache"))
    if not hits:
        raise CampError("LlamaIndex's tiktoken cache is missing from the llamaindex env — `camp env create "
                        "llamaindex --force`")
    return hits[0]


def cpu_models_dir() -> Path:
    return config.models_dir() / "huixiangdou-cpu"


class HuixiangDouResult:
    """`rows` per question (relative, score, references, and with a model: code, reply), `table`, `run_dir`."""

    def __init__(self, run_dir: Path, rows: list[dict], store_seconds: float | None):
        self.run_dir, self.rows, self.store_seconds = run_dir, rows, store_seconds

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def config_path(self) -> Path:
        return self.run_dir / "config.ini"

    def _repr_html_(self) -> str:
        cols = [c for c in ("question", "relative", "references", "code", "reply") if c in self.table]
        return self.table[cols].to_html(index=False)


class HuixiangDouStage(Stage):
    name = "huixiangdou"
    env = "huixiangdou"

    def __init__(self, sources, questions, upstream, *, profile, pipeline: bool):
        self.sources, self.questions, self.upstream = sources, questions, upstream
        self.profile, self.pipeline = profile, pipeline
        self.files: list[Path] = []

    def validate(self) -> None:
        from camp.rag import documents

        files, _ = documents.collect(self.sources)
        self.files, _bad = documents.readable(files)
        if not self.files:
            raise CampError(f"no readable documents in {self.sources} for HuixiangDou")
        if not self.questions or not all(isinstance(q, str) and q.strip() for q in self.questions):
            raise CampError("give one or more non-empty questions")
        if self.pipeline and self.upstream is None:
            raise CampError("HuixiangDou's pipeline needs a model: pass model= an endpoint")

    def _models(self, run_dir: Path) -> tuple[Path, Path]:
        from camp.runtime import hardware

        prof = hardware.profile(self.profile or "auto")
        if prof.device == "cuda":
            from camp.models.hub import download

            return Path(download(GPU_MODELS["embedding"])), Path(download(GPU_MODELS["reranker"]))
        folder = cpu_models_dir()
        return folder / "embedding", folder / "reranker"

    def prepare(self, run_dir: Path):
        self.embedding, self.reranker = self._models(run_dir)
        repo = run_dir / "repodir"
        if repo.exists():
            shutil.rmtree(repo)
        repo.mkdir(parents=True)
        for f in self.files:  # copies: HuixiangDou reads (and may annotate) what is in its repo dir
            dest = repo / f.name
            n = 1
            while dest.exists():
                dest, n = repo / f"{f.stem}-{n}{f.suffix}", n + 1
            shutil.copy2(f, dest)
        (run_dir / "resource").mkdir(exist_ok=True)
        (run_dir / "resource" / "good_questions.json").write_text(json.dumps(GOOD, ensure_ascii=False, indent=1))
        (run_dir / "resource" / "bad_questions.json").write_text(json.dumps(BAD, ensure_ascii=False, indent=1))
        up = self.upstream
        (run_dir / "config.ini").write_text(config_ini(
            embedding=self.embedding, reranker=self.reranker, work_dir=run_dir / "workdir",
            base_url=up.base_url if up else "http://127.0.0.1:1/v1", model=up.model if up else "none",
            api_key=up.api_key if up else None), encoding="utf-8")
        job = {"config": str(run_dir / "config.ini"), "work_dir": str(run_dir / "workdir"), "questions": self.questions,
               "pipeline": self.pipeline, "out": str(run_dir / "answers.jsonl")}
        (run_dir / "job.json").write_text(json.dumps(job, ensure_ascii=False, indent=1), encoding="utf-8")
        return None

    def _env(self) -> dict:
        from camp.serving.client import no_proxy_env

        return {**no_proxy_env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", "TIKTOKEN_CACHE_DIR": str(_tiktoken_cache()),
                "PYTHONWARNINGS": "ignore"}

    def steps(self, run_dir: Path):
        py = str(envs.python("huixiangdou"))
        env = self._env()
        folder = cpu_models_dir()
        if self.embedding.parent == folder and not markers.is_complete(folder, CPU_MODELS_KIND):
            tmp = markers.tmp_sibling(folder)
            folder.parent.mkdir(parents=True, exist_ok=True)

            def models_check(job, tmp=tmp):
                ok = (tmp / "embedding" / "modules.json").exists() and (tmp / "reranker" / "config.json").exists()
                return None if ok else "the embedding/reranker folders were not written"

            yield Step("huixiangdou models", [py, str(HERE / "huixiangdou_models.py"), str(tmp)],
                       run_dir / "jobs" / "models", env="huixiangdou", extra_env=env, check=models_check)
            markers.mark(tmp, CPU_MODELS_KIND, embedding="all-MiniLM-L6-v2", reranker="untrained 1-label head")
            markers.install(tmp, folder, replace=True)
        work = run_dir / "workdir"

        def store_check(job):
            built = [p for p in work.glob("db_*") if any(p.iterdir())] if work.exists() else []
            if not built:
                return "HuixiangDou wrote no feature store (workdir/db_*)"
            return None

        yield Step("huixiangdou store", [py, "-m", "huixiangdou.services.store", "--config_path", "config.ini",
                                         "--repo_dir", "repodir", "--work_dir", "workdir",
                                         "--good_questions", "resource/good_questions.json",
                                         "--bad_questions", "resource/bad_questions.json"],
                   run_dir / "jobs" / "store", env="huixiangdou", cwd=run_dir, extra_env=env, check=store_check,
                   hints=[(r"IndexError.*rerank|index \d+ is out of bounds", "the reranker folder must have ONE "
                                                                              "label (num_labels=1)"),
                          (r"LocalEntryNotFoundError|We couldn't connect to 'https://huggingface.co'",
                           "a model folder is missing and the hub is unreachable")])
        out = run_dir / "answers.jsonl"
        n = len(self.questions)

        def answers_check(job):
            got = sum(1 for x in out.read_text(encoding="utf-8").splitlines() if x) if out.exists() else 0
            return None if got == n else f"{got} of {n} questions answered"

        yield Step("huixiangdou query", [py, str(HERE / "huixiangdou_job.py"), str(run_dir / "job.json")],
                   run_dir / "jobs" / "query", env="huixiangdou", cwd=run_dir, extra_env=env, check=answers_check,
                   parser=_progress, total=n, unit="question")

    def finish(self, run_dir: Path, jobs):
        rows = [json.loads(x) for x in (run_dir / "answers.jsonl").read_text(encoding="utf-8").splitlines() if x]
        store = next((j for j in jobs if j.name == "huixiangdou store"), None)
        return HuixiangDouResult(run_dir, rows, store.seconds if store else None)


def _progress(line: str, p) -> None:
    m = re.match(r"question (\d+)/(\d+)", line)
    if m:
        p.update(n=int(m.group(1)), total=int(m.group(2)))


def run(sources, questions, model=None, *, pipeline: bool | None = None, profile=None, run_dir=None,
        show=True) -> HuixiangDouResult:
    """Build HuixiangDou's store from `sources` (a folder, files, or a KnowledgeBase: its files) and ask it
    `questions`; with `model` (an endpoint, URL or name) also run its pipeline (pipeline=None: when a model is
    given)."""
    from camp.rag.endpoint import upstream_client
    from camp.rag.kb import KnowledgeBase

    if isinstance(sources, KnowledgeBase):
        sources = [v["path"] for v in sources.files.values()]
    qs = [questions] if isinstance(questions, str) else list(questions)
    up = upstream_client(model) if model is not None else None
    pipe = (up is not None) if pipeline is None else pipeline
    return HuixiangDouStage(sources, qs, up, profile=profile, pipeline=pipe).run(run_dir=run_dir, show=show)


def command_lines(run_dir: Path) -> list[str]:
    """The commands a student can run by hand in the run folder."""
    return [f"cd {run_dir}",
            "camp env run huixiangdou -- python -m huixiangdou.services.store --config_path config.ini "
            "--repo_dir repodir --work_dir workdir",
            "camp env run huixiangdou -- python -m huixiangdou.main --config_path config.ini  # interactive"]

