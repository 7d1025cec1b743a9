"""camp.bench: percentiles, per-level rows, the result's table/plot/HTML, the CLI, and an in-process run."""

from __future__ import annotations

import json
import threading
import time

import pytest

import camp
from camp.runtime.errors import CampError
from camp.serving import bench as throughput
from camp.serving.bench import BenchResult, RequestStat


def test_percentile_interpolates_like_numpy():
    import numpy as np

    data = [0.9, 0.1, 0.5, 0.3, 2.0, 0.7]
    for q in (0, 10, 50, 90, 99, 100):
        assert throughput.percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    assert throughput.percentile([], 50) is None and throughput.percentile([None, 1.0], 50) == 1.0


def test_a_level_row_counts_tokens_over_wall_time_and_errors_apart():
    stats = [RequestStat(True, 1.0, 0.1, 10), RequestStat(True, 2.0, 0.3, 30),
             RequestStat(False, 0.5, None, 0, "APIConnectionError: refused")]
    row = throughput._row(4, stats, wall=2.0)
    assert row["concurrency"] == 4 and row["requests"] == 3 and row["errors"] == 1
    assert row["output_tokens"] == 40 and row["tokens_per_s"] == 20.0 and row["requests_per_s"] == 1.0
    assert row["latency_p50_s"] == 1.5 and row["ttft_p50_s"] == 0.2  # failed requests are not in the latencies
    assert list(row) == throughput.COLUMNS


class FakeRunner:
    """Sleeps like a server that handles `slots` requests at a time; answers 8 tokens."""

    kind = "endpoint"

    def __init__(self, slots: int, fail_every: int = 0):
        self.sem = threading.Semaphore(slots)
        self.notes, self.calls, self.fail_every = [], 0, fail_every
        self.lock = threading.Lock()

    def describe(self):
        return "fake @ http://127.0.0.1:1/v1"

    def one(self, prompt, max_tokens):
        with self.lock:
            self.calls += 1
            n = self.calls
        t0 = time.perf_counter()
        if self.fail_every and n % self.fail_every == 0:
            return RequestStat(False, 0.0, None, 0, "boom")
        with self.sem:
            time.sleep(0.02)
        return RequestStat(True, time.perf_counter() - t0, 0.005, min(8, max_tokens))


def test_bench_runs_each_level_with_its_requests(monkeypatch):
    runner = FakeRunner(slots=4)
    monkeypatch.setattr(throughput, "_runner", lambda target, key: runner)
    r = camp.bench("http://x/v1#fake", concurrency=(1, 4), max_tokens=8)
    assert [row["requests"] for row in r.rows] == [4, 8]  # default max(4, 2c)
    assert runner.calls == 1 + 4 + 8  # one warm-up, not counted
    assert all(row["errors"] == 0 and row["output_tokens"] == 8 * row["requests"] for row in r.rows)
    # four slots: four at once finish sooner than one at a time
    assert r.rows[1]["requests_per_s"] > r.rows[0]["requests_per_s"]


def test_bench_reports_failed_requests(monkeypatch):
    monkeypatch.setattr(throughput, "_runner", lambda target, key: FakeRunner(slots=2, fail_every=3))
    r = camp.bench("http://x/v1#fake", concurrency=2, requests=6, warmup=False)
    assert r.rows[0]["errors"] == 2 and r.errors == [(2, "boom"), (2, "boom")]
    assert "error at concurrency 2: boom" in str(r)


def test_bench_refuses_bad_settings_and_a_failing_warm_up(monkeypatch):
    monkeypatch.setattr(throughput, "_runner", lambda target, key: FakeRunner(slots=1, fail_every=1))
    with pytest.raises(CampError, match="warm-up request .* failed: boom"):
        camp.bench("http://x/v1#fake", concurrency=(1,))
    for bad in ((0,), [], ("a",)):
        with pytest.raises(CampError, match="concurrency"):
            camp.bench("http://x/v1#fake", concurrency=bad)


def test_result_table_plot_html_and_dict():
    rows = [throughput._row(c, [RequestStat(True, 0.1 * c, 0.01 * c, 16)] * c, wall=0.1 * c) for c in (1, 4, 16)]
    r = BenchResult("tiny @ http://127.0.0.1:23333/v1", "endpoint", 16, rows, notes=["a note"])
    t = r.table
    assert list(t.index) == [1, 4, 16] and t.loc[16, "output_tokens"] == 256
    fig = r.plot()
    ax = fig.axes[0]
    assert ax.get_ylabel() == "output tokens / s" and list(ax.lines[0].get_xdata()) == [1, 4, 16]
    page = r._repr_html_()
    assert "tokens_per_s" in page and "a note" in page and page.count("<tr>") == 4
    assert json.loads(json.dumps(r.to_dict()))["rows"][2]["concurrency"] == 16


def test_cli_bench_prints_a_table_or_json(monkeypatch, capsys):
    from camp.cli import main

    seen = {}

    def fake_bench(target, levels, **kw):
        seen.update(target=target, levels=levels, **kw)
        rows = [throughput._row(int(c), [RequestStat(True, 0.1, 0.01, 8)], 0.1) for c in levels]
        return BenchResult(target, "endpoint", kw["max_tokens"], rows)

    monkeypatch.setattr(throughput, "bench", fake_bench)
    assert main(["bench", "http://127.0.0.1:9/v1#m", "--concurrency", "1, 8", "--max-tokens", "32"]) == 0
    out = capsys.readouterr().out
    assert seen["levels"] == ["1", "8"] and seen["max_tokens"] == 32 and seen["requests"] is None
    assert "tok/s" in out and out.count("\n") >= 4
    assert main(["bench", "http://127.0.0.1:9/v1#m", "--json"]) == 0
    assert [r["concurrency"] for r in json.loads(capsys.readouterr().out)["rows"]] == [1, 4, 16]


@pytest.mark.integration
def test_bench_in_process_queues_concurrent_requests():
    camp.tiny.ensure()
    r = camp.bench("tiny", concurrency=(1, 2), requests=2, max_tokens=8)
    assert r.kind == "in-process" and [row["errors"] for row in r.rows] == [0, 0]
    assert all(0 < row["output_tokens"] <= 16 for row in r.rows)
    assert any("one generate() at a time" in n for n in r.notes)
    # the same session object can be measured directly (no second load)
    s = camp.chat("tiny")
    assert camp.bench(s, concurrency=1, requests=1, max_tokens=4).rows[0]["output_tokens"] <= 4
