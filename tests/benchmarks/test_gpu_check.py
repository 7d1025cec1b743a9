"""benchmarks/gpu_check.py: the budget planner and the report (unit), and the whole check rehearsed on this CPU with
the tools faked at the one seam (integration): camp's real functions write every config and command line, a rerun
resumes, and a step that overruns the budget is cut while the report survives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check as gc  # noqa: E402

CHECK = ROOT / "benchmarks" / "gpu_check.py"


# ============================================================================ the plan
def test_plan_runs_in_order_within_the_budget_and_says_why_it_skips():
    planned = gc.plan(list(gc.STEPS), {}, remaining=600, scale="full")
    run = [s.name for s, why in planned if why is None]
    assert run[:3] == ["probe", "shapes-1.8b", "lmdeploy-1.8b"]
    assert sum(gc.estimate(gc.BY_NAME[n], "full") for n in run) <= 600 - gc.RESERVE_S
    skipped = {s.name: why for s, why in planned if why is not None}
    assert skipped, "600 s cannot hold every step"
    assert any("of the budget left" in w for w in skipped.values())
    # what needs the 7B checkpoint is skipped with that reason when the 7B build does not fit
    assert "needs shapes-7b" in skipped["lmdeploy-7b"]


def test_plan_skips_done_steps_and_honours_only_and_skip():
    states = {"probe": {"status": "done"}, "shapes-1.8b": {"status": "done"}}
    planned = dict((s.name, why) for s, why in gc.plan(list(gc.STEPS), states, 10_000, "full",
                                                        only={"lmdeploy-1.8b", "qlora-1.8b"}, skip={"qlora-1.8b"}))
    assert planned["probe"] == "done in an earlier run"
    assert planned["lmdeploy-1.8b"] is None
    assert planned["qlora-1.8b"] == "left out (--skip)"
    assert planned["kv8-1.8b"] == "not asked for (--only)"
    failed = {"shapes-1.8b": {"status": "failed"}}
    again = dict((s.name, why) for s, why in gc.plan(list(gc.STEPS), failed, 10_000, "full"))
    assert again["shapes-1.8b"] is None, "a failed step is retried"


def test_steps_that_need_no_env_go_first_while_the_envs_are_built():
    class Building:
        done: set = set()

        def built(self, name):
            return name in self.done

    pending = [gc.BY_NAME[n] for n in ("lmdeploy-1.8b", "hf-1.8b", "qlora-1.8b", "shapes-7b", "hf-7b")]
    setup = Building()
    assert gc.next_step(pending, setup).name == "hf-1.8b"
    pending.remove(gc.BY_NAME["hf-1.8b"])
    setup.done = {"xtuner"}
    assert gc.next_step(pending, setup).name == "qlora-1.8b"
    # hf-7b waits for its checkpoint step even though it needs no env
    assert gc.next_step([gc.BY_NAME["hf-7b"], gc.BY_NAME["shapes-7b"]], setup).name == "shapes-7b"
    setup.done = set()
    assert gc.next_step([gc.BY_NAME["lmdeploy-1.8b"]], setup).name == "lmdeploy-1.8b", "then it waits"


def test_decode_rate_and_the_bandwidth_limit():
    row = {"concurrency": 1, "requests": 4, "errors": 0, "output_tokens": 4 * 129, "latency_p50_s": 1.05,
           "ttft_p50_s": 0.05}
    assert gc.decode_rate(row, 129) == 128.0
    states = {
        "probe": {"status": "done", "data": {"bandwidth_gbs": 4000.0}},
        "shapes-1.8b": {"status": "done", "data": {"weight_bytes": 4_000_000_000}},
        "hf-1.8b": {"status": "done", "data": {"decode_tps": 50.0, "bench": [
            {"concurrency": 1, "tokens_per_s": 40.0}, {"concurrency": 16, "tokens_per_s": 41.0}]}},
        "lmdeploy-1.8b": {"status": "done", "data": {"decode_tps": 800.0, "bench": [
            {"concurrency": 1, "tokens_per_s": 240.0}, {"concurrency": 64, "tokens_per_s": 6150.0}]}},
        "qlora-1.8b": {"status": "failed", "data": {"predicted_total_gib": 9.0}},
    }
    c = gc.comparisons(states)["1.8b"]
    assert c["bandwidth_limit_tokens_per_s"] == 1000.0  # 4000 GB/s over 4 GB read per token
    assert c["lmdeploy-1.8b_decode"]["fraction_of_limit"] == 0.8
    assert c["lmdeploy_vs_hf_at_1"] == 6.0
    assert c["lmdeploy_at_64_vs_hf_best"] == 150.0
    assert c["qlora-1.8b"]["predicted_total_gib"] is None, "a failed step's numbers are not reported"
    md = gc.markdown({"note": gc.NOTE, "rehearsal": False, "scale": "full", "budget_s": 700, "elapsed_s": 600,
                      "time_to_first_measurement_s": 70.0, "setup": {}, "steps": {}, "comparisons":
                      gc.comparisons(states)})
    assert gc.NOTE in md and "REHEARSAL" not in md
    assert "| LMDeploy TurboMind | 240.0 | - | 6150.0 |" in md


# ============================================================================ the rehearsal
def _env(tmp: Path, xtuner_code: Path, **extra) -> dict:
    env = dict(os.environ)
    env.pop("CAMP_FAKE_GPUS", None)
    env.update(CAMP_HOME=str(tmp / "home"), CAMP_INTERNLM2_CODE=str(xtuner_code), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _check(tmp: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # small levels and replies: the fake server's speed is not what is rehearsed (the plumbing is)
    cmd = [sys.executable, str(CHECK), "--out", str(tmp / "out"), "--rehearse", "--scale", "ci", "--max-tokens", "8",
           "--levels", "1,4",
           "--calib-samples", "2", "--eval-limit", "3", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def xtuner_python() -> Path:
    """The xtuner env's python through camp's one env policy (a registered env as it is; built when missing)."""
    from camp.runtime import envs, progress

    return envs.ensure("xtuner", view=progress.SILENT)


@pytest.fixture(scope="module")
def xtuner_code() -> Path:
    """XTuner's InternLM2 modelling code: $CAMP_INTERNLM2_CODE when set (a folder or an xtuner wheel), else the xtuner
    env `make test` builds."""
    if os.environ.get("CAMP_INTERNLM2_CODE"):
        return Path(os.environ["CAMP_INTERNLM2_CODE"])
    py = xtuner_python()
    r = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('xtuner').submodule_search_"
                        "locations[0])"], capture_output=True, text=True, check=True)
    return Path(r.stdout.strip()) / "_lite" / "modelings" / "internlm2"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, xtuner_code):
    tmp = tmp_path_factory.mktemp("gpu_check")
    env = _env(tmp, xtuner_code)
    r = _check(tmp, env, "--budget-s", "900", "--skip", "shapes-7b")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, env


@pytest.mark.integration
def test_rehearsal_runs_every_step_through_camp_and_reports_it(rehearsal):
    tmp, _ = rehearsal
    out = tmp / "out"
    res = json.loads((out / "results.json").read_text())
    steps = res["steps"]
    for name in ("probe", "shapes-1.8b", "lmdeploy-1.8b", "hf-1.8b", "qlora-1.8b", "lora-1.8b", "kv8-1.8b",
                 "awq-1.8b", "eval-1.8b"):
        assert steps[name]["status"] == "done", (name, steps[name].get("why"), steps[name].get("traceback"))
    assert steps["lmdeploy-7b"]["status"] == "skipped" and "shapes-7b" in steps["lmdeploy-7b"]["why"]
    assert res["rehearsal"] is True and res["note"] == gc.NOTE
    md = (out / "results.md").read_text()
    assert "REHEARSAL" in md and "FAKE" in md and gc.NOTE in md

    # the checkpoint: real layout, scaled down, normalised as a download is
    shp = steps["shapes-1.8b"]["data"]
    folder = Path(shp["folder"])
    assert folder.name.endswith("-shapes-ci-llama")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((Path(shp["source"]) / "config.json").read_text())["architectures"] == ["InternLM2ForCausalLM"]

    calls = [json.loads(line)["argv"] for line in (out / "fake_calls.jsonl").read_text().splitlines()]
    serves = [a for a in calls if Path(a[0]).name == "lmdeploy" and a[1:3] == ["serve", "api_server"]]
    assert len(serves) == 4  # TurboMind, int8 KV, AWQ, the evaluation's endpoint
    policies = sorted(a[a.index("--quant-policy") + 1] for a in serves)
    assert policies == ["0", "0", "0", "8"]
    awq_served = [a for a in serves if a[a.index("--model-format") + 1] == "awq"]
    assert len(awq_served) == 1 and awq_served[0][3].endswith("-w4a16")
    assert all(a[a.index("--server-name") + 1] == "127.0.0.1" for a in serves)
    auto_awq = next(a for a in calls if "auto_awq" in a)
    assert auto_awq[auto_awq.index("--calib-samples") + 1] == "2" and "--work-dir" in auto_awq
    assert Path(auto_awq[auto_awq.index("--calib-dataset") + 1]).read_text(encoding="utf-8").strip()

    # XTuner: the planner's settings for a GPU profile, QLoRA in 4 bit, and the measured peaks read back
    for method in ("qlora", "lora"):
        data = steps[f"{method}-1.8b"]["data"]
        cfg = Path(data["config"]).read_text(encoding="utf-8")
        assert "AmpOptimWrapper" in cfg and "torch.bfloat16" in cfg
        assert ("load_in_4bit=True" in cfg) == (method == "qlora")
        assert f"max_iters = {gc.parse_args(['--out', 'x']).iters}" in cfg
        assert data["plan"]["method"] == method and data["plan"]["device"] == "cuda"
        assert data["xtuner_memory_mib"] and data["torch_max_allocated_mib"] and data["predicted_allocated_mib"]
    trains = [a for a in calls if any(x.endswith("tools/train.py") for x in a)]
    assert len(trains) == 2

    # OpenCompass against the LMDeploy endpoint, counting tokens with the served folder's tokenizer
    oc_cfg = Path(steps["eval-1.8b"]["data"]["config"]).read_text(encoding="utf-8")
    assert "OpenAISDK" in oc_cfg and "http://127.0.0.1:" in oc_cfg and str(folder) in oc_cfg
    assert steps["eval-1.8b"]["data"]["table"]

    cmp_ = res["comparisons"]["1.8b"]
    assert cmp_["lmdeploy_vs_hf_at_1"] and cmp_["bandwidth_limit_tokens_per_s"]
    assert cmp_["qlora-1.8b"]["xtuner_memory_mib"] is not None


@pytest.mark.integration
def test_a_rerun_resumes_and_a_step_past_the_budget_is_cut(rehearsal, tmp_path):
    tmp, env = rehearsal
    out = tmp / "out"
    before = len((out / "fake_calls.jsonl").read_text().splitlines())
    r = _check(tmp, env, "--budget-s", "900", "--skip", "shapes-7b")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len((out / "fake_calls.jsonl").read_text().splitlines()) == before, "done steps ran again"
    assert "done in an earlier run" in (out / "log.txt").read_text()

    # a fresh results folder (the checkpoint is already built), an LMDeploy that never comes up: the step is killed
    # at its deadline, the report stays
    env2 = {**env, "CAMP_GPU_FAKE_DELAY": "600"}
    r = subprocess.run([sys.executable, str(CHECK), "--out", str(tmp_path / "out"), "--rehearse", "--scale", "ci",
                        "--only", "shapes-1.8b,lmdeploy-1.8b", "--budget-s", "60"],
                       env=env2, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["steps"]["shapes-1.8b"]["status"] == "done"
    assert res["steps"]["lmdeploy-1.8b"]["status"] == "cut", res["steps"]["lmdeploy-1.8b"]
    assert res["elapsed_s"] < 60 + 15
    assert "cut" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.integration
def test_setup_builds_the_tool_env_with_camps_env_code(tmp_path, xtuner_code):
    """--setup-only: camp.runtime.envs creates the lmdeploy env for a CUDA machine (pip is the faked tool), with the
    machine's own torch (CAMP_TORCH=system), and the setup is timed in the report."""
    env = _env(tmp_path, xtuner_code, CAMP_TORCH="system")
    r = subprocess.run([sys.executable, str(CHECK), "--out", str(tmp_path / "out"), "--rehearse", "--rehearse-setup",
                        "--setup-only", "--only", "lmdeploy-1.8b", "--scale", "ci"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    info = res["setup"]["envs"]["lmdeploy"]
    assert info["status"] == "ready" and info["seconds"] > 0
    assert info["commands"][1] == "pip install -r environments/lmdeploy.txt", "no torch line of its own"
    prefix = tmp_path / "home" / "envs" / "lmdeploy"
    marker = json.loads((prefix / ".camp-env.json").read_text())
    assert marker["machine"] == "cuda" and marker["versions"]["lmdeploy"] == "0.18.0"
    assert list(prefix.glob("lib/python*/site-packages/camp-machine-packages.pth"))
    pips = [json.loads(line)["argv"] for line in (tmp_path / "out" / "fake_calls.jsonl").read_text().splitlines()]
    assert pips and all("-m" in a and "pip" in a for a in pips)
    assert not any(x.startswith("torch==") for a in pips for x in a)
