"""Throughput and latency: the same prompts against an endpoint or an in-process model, at several concurrencies.

    r = camp.bench(ep, concurrency=(1, 4, 16))       # an Endpoint, "http://127.0.0.1:23333/v1#model", or a model
    r.table; r.plot(); r                              # DataFrame, matplotlib Figure, HTML table in JupyterLab

Per concurrency level c: `requests` requests (default max(4, 2c)) go out from c client threads at once, each
streaming its answer. Measured per request: time to first token (TTFT, from sending the request to the first
text piece), latency (to the last piece), output tokens (the server's `usage` when it reports one — both LMDeploy
and transformers serve do with `stream_options.include_usage` — else the number of streamed pieces; in-process:
the generated token ids). Per level: output tokens/s and requests/s over the level's wall time, TTFT and latency
p50/p90/p99, errors. Greedy decoding (temperature 0), one warm-up request first (not counted).

In-process (a model name or folder, or a camp ChatSession): one loaded model generates one answer at a time
(camp.conversation keeps a lock around generate()), so concurrent requests queue — their TTFT includes the wait.
That is the point of the lesson: a serving engine batches concurrent requests, a plain `generate()` cannot.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from camp.runtime.errors import CampError

DEFAULT_PROMPTS = [
    "你是谁？",
    "XTuner 是什么？",
    "请介绍一下书生·浦语的全链路开源体系。",
    "What is LMDeploy used for?",
    "OpenCompass 可以做什么？",
    "Explain what W4A16 quantization means.",
    "怎么用 LoRA 微调一个模型？",
    "Tell me about the InternLM toolchain in a few sentences.",
]
COLUMNS = ["concurrency", "requests", "errors", "seconds", "output_tokens", "tokens_per_s", "requests_per_s",
           "ttft_p50_s", "ttft_p90_s", "latency_p50_s", "latency_p90_s", "latency_p99_s"]


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between order statistics (numpy's default)."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class RequestStat:
    ok: bool
    latency: float
    ttft: float | None = None
    tokens: int = 0
    error: str | None = None


# ============================================================================================ runners
class _EndpointRunner:
    kind = "endpoint"

    def __init__(self, client):
        self.client = client  # camp.serving.client.Client
        self.notes: list[str] = []

    def describe(self) -> str:
        return f"{self.client.model} @ {self.client.base_url}"

    def one(self, prompt: str, max_tokens: int) -> RequestStat:
        t0 = time.perf_counter()
        ttft, pieces, usage = None, 0, None
        try:
            from camp.multimodal.messages import to_openai  # pictures travel as data: URIs

            stream = self.client.stream(to_openai(_messages(prompt)), usage=True, max_tokens=max_tokens, temperature=0)
            try:
                for chunk in stream:
                    if getattr(chunk, "usage", None) and chunk.usage.completion_tokens is not None:
                        usage = chunk.usage.completion_tokens
                    if chunk.choices and chunk.choices[0].delta.content:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        pieces += 1
            finally:
                stream.close()
        except Exception as exc:  # noqa: BLE001 - a failed request is a measurement (errors column)
            return RequestStat(False, time.perf_counter() - t0, ttft, 0, f"{type(exc).__name__}: {exc}"[:300])
        if usage is None and "no usage" not in self.notes:
            self.notes.append("no usage")
        return RequestStat(True, time.perf_counter() - t0, ttft, usage if usage is not None else pieces)


class _LocalRunner:
    kind = "in-process"

    def __init__(self, session):
        self.backend = session.backend
        self.lock = threading.Lock()  # so last_stats belongs to our request (generate() is serialized anyway)
        self.notes = ["in-process: one generate() at a time; concurrent requests queue (TTFT includes the wait)"]

    def describe(self) -> str:
        return self.backend.describe()

    def one(self, prompt: str, max_tokens: int) -> RequestStat:
        t0 = time.perf_counter()
        ttft = None
        try:
            with self.lock:
                for _piece in self.backend.stream(_messages(prompt),
                                                  {"max_new_tokens": max_tokens, "do_sample": False}):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                tokens = int(self.backend.last_stats.get("tokens", 0))
        except Exception as exc:  # noqa: BLE001
            return RequestStat(False, time.perf_counter() - t0, ttft, 0, f"{type(exc).__name__}: {exc}"[:300])
        return RequestStat(True, time.perf_counter() - t0, ttft, tokens)


def _messages(prompt) -> list[dict]:
    """A prompt is text, or a user message with pictures (bench(..., images=…))."""
    return [prompt] if isinstance(prompt, dict) else [{"role": "user", "content": prompt}]


def _runner(target, api_key: str | None):
    from camp.conversation.session import ChatSession
    from camp.serving.client import Client
    from camp.serving.endpoint import Endpoint

    if isinstance(target, Endpoint):
        return _EndpointRunner(Client(target.base_url, target.model, api_key or target.api_key))
    if isinstance(target, ChatSession):
        if target.backend.kind == "endpoint":
            return _EndpointRunner(Client(target.backend.base_url, target.backend.model, api_key))
        return _LocalRunner(target)
    s = str(target)
    if s.startswith(("http://", "https://")):
        client = Client(s, api_key=api_key)
        client.model  # noqa: B018 - resolve the served name now: a wrong URL fails before the warm-up
        return _EndpointRunner(client)
    from camp.conversation.session import chat

    return _LocalRunner(chat(target))


# ============================================================================================ result
@dataclass
class BenchResult:
    """`rows` (one dict per concurrency level, COLUMNS), `.table` (DataFrame), `.plot()`, `.to_dict()`."""

    target: str
    kind: str
    max_tokens: int
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (concurrency, message) of failed requests, first few

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=COLUMNS).set_index("concurrency")

    def to_dict(self) -> dict:
        return {"target": self.target, "kind": self.kind, "max_tokens": self.max_tokens, "rows": self.rows,
                "notes": self.notes, "errors": self.errors}

    def plot(self):
        from camp.ui.plots import bench_figure

        return bench_figure(self)

    def __str__(self) -> str:
        head = ["conc", "reqs", "err", "tok/s", "req/s", "TTFT p50", "p50 s", "p90 s", "p99 s"]
        lines = [f"bench {self.kind}: {self.target} (max_tokens {self.max_tokens}, greedy)",
                 "".join(f"{h:>10}" for h in head)]

        def f(v, spec=".3f"):
            return "-" if v is None else format(v, spec)

        for r in self.rows:
            cells = [str(r["concurrency"]), str(r["requests"]), str(r["errors"]), f(r["tokens_per_s"], ".1f"),
                     f(r["requests_per_s"], ".2f"), f(r["ttft_p50_s"]), f(r["latency_p50_s"]),
                     f(r["latency_p90_s"]), f(r["latency_p99_s"])]
            lines.append("".join(f"{c:>10}" for c in cells))
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"error at concurrency {c}: {m}" for c, m in self.errors]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from camp.ui.html import bench_html

        return bench_html(self)




def _row(c: int, stats: list[RequestStat], wall: float) -> dict:
    ok = [s for s in stats if s.ok]
    tokens = sum(s.tokens for s in ok)
    lat = [s.latency for s in ok]
    ttft = [s.ttft for s in ok]

    def r(v):
        return None if v is None else round(v, 4)

    return {"concurrency": c, "requests": len(stats), "errors": len(stats) - len(ok), "seconds": round(wall, 4),
            "output_tokens": tokens, "tokens_per_s": round(tokens / wall, 2) if wall > 0 else 0.0,
            "requests_per_s": round(len(ok) / wall, 3) if wall > 0 else 0.0,
            "ttft_p50_s": r(percentile(ttft, 50)), "ttft_p90_s": r(percentile(ttft, 90)),
            "latency_p50_s": r(percentile(lat, 50)), "latency_p90_s": r(percentile(lat, 90)),
            "latency_p99_s": r(percentile(lat, 99))}


def _levels(concurrency) -> list[int]:
    items = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    try:
        levels = [int(c) for c in items]
    except (TypeError, ValueError) as exc:
        raise CampError(f"concurrency must be whole numbers, got {concurrency!r}") from exc
    if not levels or any(c < 1 for c in levels):
        raise CampError(f"concurrency levels must be ≥ 1, got {concurrency!r}")
    return levels


def bench(target, concurrency=(1, 4, 16), *, requests: int | None = None, max_tokens: int = 64,
          prompts=None, api_key: str | None = None, warmup: bool = True, images=None) -> BenchResult:
    """Measure `target` — an Endpoint, an endpoint URL ("http://…/v1#model"), a ChatSession, or a model
    name/folder (loaded in-process) — at each concurrency level. See the module docstring. `images`: pictures
    for a vision-language model, paired with the prompts in turn (image requests)."""
    levels = _levels(concurrency)
    if max_tokens < 1:
        raise CampError("max_tokens must be ≥ 1")
    if requests is not None and requests < 1:
        raise CampError("requests must be ≥ 1")
    prompts = [str(p) for p in (prompts or DEFAULT_PROMPTS)]
    if not prompts:
        raise CampError("no prompts to send")
    if images is not None:
        from camp.multimodal.messages import as_list, user_message

        pics = as_list(images)
        n = max(len(prompts), len(pics))
        prompts = [user_message(prompts[i % len(prompts)], pics[i % len(pics)]) for i in range(n)]
    runner = _runner(target, api_key)
    if warmup:
        first = runner.one(prompts[0], max_tokens)
        if not first.ok:
            raise CampError(f"the warm-up request to {runner.describe()} failed: {first.error}")
    result = BenchResult(runner.describe(), runner.kind, max_tokens)
    for c in levels:
        n = requests or max(4, 2 * c)
        with ThreadPoolExecutor(max_workers=c, thread_name_prefix="camp-bench") as pool:
            t0 = time.perf_counter()
            stats = list(pool.map(lambda i: runner.one(prompts[i % len(prompts)], max_tokens), range(n)))
            wall = time.perf_counter() - t0
        result.rows.append(_row(c, stats, wall))
        for s in stats:
            if not s.ok and len(result.errors) < 5:
                result.errors.append((c, s.error))
    notes = list(runner.notes)
    if "no usage" in notes:
        notes.remove("no usage")
        notes.append("the server reported no token usage: output tokens counted as streamed pieces")
    result.notes = notes
    return result


# ============================================================================================ CLI
def cli_bench(args) -> int:
    levels = [c.strip() for c in str(args.concurrency).split(",") if c.strip()]
    result = bench(args.target, levels, requests=args.requests, max_tokens=args.max_tokens, api_key=args.api_key)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
    else:
        print(result)
    return 1 if any(r["errors"] for r in result.rows) else 0
