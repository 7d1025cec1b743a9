"""camp.serve / camp.quantize: exact LMDeploy 0.18 command lines per profile, the memory plan, the AWQ launcher with
a local calibration file; on CPU the tiny model behind `transformers serve` through the openai SDK, concurrency,
reuse, busy ports, API keys, no orphans."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import camp
import camp.serving.awq as _awq
import camp.serving.endpoint as _endpoint
import camp.serving.ports as _ports
import camp.serving.stage as _sstage
from camp.runtime import hardware
from camp.runtime.errors import CampError
from camp.serving.engines.lmdeploy import AWQ_LAUNCHER, auto_awq_command, lmdeploy_serve_command
from camp.serving.engines.transformers import tool_command as transformers_serve_command
from camp.serving.memory import MIN_TOKENS, Quant, parse_quant, plan_serving
from camp.training.plan import arch_from_config, model_arch
from tests.conftest import subprocess_env

API = ["lmdeploy", "serve", "api_server"]


def _profile(name: str, monkeypatch) -> hardware.Profile:
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")  # plan for the profile's nominal size, whatever this machine is
    return hardware.profile(name)


def _awq_7b_folder(tmp_path: Path) -> Path:
    """A folder as `lmdeploy lite auto_awq` leaves it for InternLM2.5-7B (Llama layout): config with AWQ."""
    folder = tmp_path / "internlm2_5-7b-chat-w4a16"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 92544,
        "max_position_embeddings": 32768, "tie_word_embeddings": False,
        "quantization_config": {"quant_method": "awq", "version": "gemm", "bits": 4, "group_size": 128,
                                "zero_point": True}}))
    return folder


# =============================================================================================== command lines
def test_gpu_8g_serves_1_8b_unquantized_with_half_the_free_memory_for_kv(monkeypatch):
    cmd = lmdeploy_serve_command("/m/internlm2_5-1_8b-chat", _profile("gpu-8g", monkeypatch),
                                 arch=model_arch("internlm2_5-1_8b-chat"), model_name="internlm2_5-1_8b-chat")
    assert cmd == [*API, "/m/internlm2_5-1_8b-chat", "--server-name", "127.0.0.1", "--server-port", "23333",
                   "--backend", "turbomind", "--tp", "1", "--cache-max-entry-count", "0.5", "--quant-policy", "0",
                   "--model-format", "hf", "--model-name", "internlm2_5-1_8b-chat"]


@pytest.mark.parametrize("quant, policy", [("kv8", "8"), ("kv4", "4"), ("kv16", "0")])
def test_gpu_24g_serves_7b_with_the_kv_policy_asked_for(monkeypatch, quant, policy):
    cmd = lmdeploy_serve_command("/m/internlm2_5-7b-chat", _profile("gpu-24g", monkeypatch), quant,
                                 arch=model_arch("internlm2_5-7b-chat"), model_name="internlm2_5-7b-chat")
    assert cmd == [*API, "/m/internlm2_5-7b-chat", "--server-name", "127.0.0.1", "--server-port", "23333",
                   "--backend", "turbomind", "--tp", "1", "--cache-max-entry-count", "0.55", "--quant-policy", policy,
                   "--model-format", "hf", "--model-name", "internlm2_5-7b-chat"]


def test_gpu_80g_x2_tensor_parallel_when_asked(monkeypatch):
    cmd = lmdeploy_serve_command("/m/internlm2_5-20b-chat", _profile("gpu-80g-x2", monkeypatch), tp=2,
                                 arch=model_arch("internlm2_5-20b-chat"))
    assert cmd == [*API, "/m/internlm2_5-20b-chat", "--server-name", "127.0.0.1", "--server-port", "23333",
                   "--backend", "turbomind", "--tp", "2", "--cache-max-entry-count", "0.85", "--quant-policy", "0",
                   "--model-format", "hf", "--model-name", "internlm2_5-20b-chat"]
    # 20B (37 GiB of bf16 weights) fits one 80 GB GPU: without tp= the plan keeps it on one
    one = plan_serving(model_arch("internlm2_5-20b-chat"), _profile("gpu-80g-x2", monkeypatch))
    assert one.tp == 1


def test_tensor_parallel_is_chosen_when_the_weights_do_not_fit_one_gpu(monkeypatch):
    cmd = lmdeploy_serve_command("/m/internlm2_5-20b-chat", _profile("gpu-24g-x2", monkeypatch),
                                 arch=model_arch("internlm2_5-20b-chat"))
    assert cmd == [*API, "/m/internlm2_5-20b-chat", "--server-name", "127.0.0.1", "--server-port", "23333",
                   "--backend", "turbomind", "--tp", "2", "--cache-max-entry-count", "0.3", "--quant-policy", "0",
                   "--model-format", "hf", "--model-name", "internlm2_5-20b-chat"]


def test_awq_folder_is_served_as_awq_and_the_plan_quantizes_the_kv_cache_to_fit(monkeypatch, tmp_path):
    folder = _awq_7b_folder(tmp_path)
    prof = _profile("gpu-8g", monkeypatch)
    cmd = lmdeploy_serve_command(folder, prof, model_name="internlm2_5-7b-chat-w4a16")
    assert cmd == [*API, str(folder), "--server-name", "127.0.0.1", "--server-port", "23333",
                   "--backend", "turbomind", "--tp", "1", "--cache-max-entry-count", "0.2", "--quant-policy", "8",
                   "--model-format", "awq", "--model-name", "internlm2_5-7b-chat-w4a16"]
    plan = plan_serving(arch_from_config(folder), prof, model_format="awq")
    assert any("int8" in n for n in plan.notes)  # the plan says why it quantized the KV cache


def test_api_key_host_port_and_pytorch_backend(monkeypatch):
    cmd = lmdeploy_serve_command("/m/internlm2_5-1_8b-chat", _profile("gpu-8g", monkeypatch), None, 24000,
                                 "0.0.0.0", "sk-camp", arch=model_arch("internlm2_5-1_8b-chat"),
                                 backend="pytorch", model_name="my-bot")
    assert cmd == [*API, "/m/internlm2_5-1_8b-chat", "--server-name", "0.0.0.0", "--server-port", "24000",
                   "--backend", "pytorch", "--tp", "1", "--cache-max-entry-count", "0.5", "--quant-policy", "0",
                   "--model-format", "hf", "--api-keys", "sk-camp", "--model-name", "my-bot"]


def test_w4a16_on_an_unquantized_folder_says_to_quantize_first(monkeypatch):
    with pytest.raises(CampError, match="quantize"):
        lmdeploy_serve_command("/m/internlm2_5-7b-chat", _profile("gpu-8g", monkeypatch), "w4a16",
                               arch=model_arch("internlm2_5-7b-chat"))


def test_transformers_serve_and_auto_awq_commands():
    assert transformers_serve_command("/models/tiny", 23400) == [
        "transformers", "serve", "/models/tiny", "--host", "127.0.0.1", "--port", "23400", "--device", "cpu"]
    assert auto_awq_command("/m/7b", "/out/7b-w4a16", "/run/calibration.txt") == [
        "lmdeploy", "lite", "auto_awq", "/m/7b", "--calib-dataset", "/run/calibration.txt", "--calib-samples", "128",
        "--calib-seqlen", "2048", "--w-bits", "4", "--w-group-size", "128", "--work-dir", "/out/7b-w4a16"]
    assert auto_awq_command("/m/7b", "/o", "/c.txt", calib_samples=64, calib_seqlen=1024, dtype="float16")[-6:] == [
        "--w-group-size", "128", "--work-dir", "/o", "--dtype", "float16"]


# =============================================================================================== the plan
def test_plan_follows_the_written_formula(monkeypatch):
    arch = model_arch("internlm2_5-1_8b-chat")
    p = plan_serving(arch, _profile("gpu-8g", monkeypatch))
    free, weights = 8.0, arch.params * 2 / 2**30
    runtime = 0.75 + 8192 * (4 * arch.hidden_size + 2 * arch.intermediate_size) * 2 / 2**30
    headroom = max(1.0, 0.1 * free)
    kv = free - weights - runtime - headroom
    assert p.weights_gib == pytest.approx(weights, abs=1e-3) and p.runtime_gib == pytest.approx(runtime, abs=1e-3)
    assert p.cache_max_entry_count == pytest.approx(int(kv / (free - weights) / 0.05) * 0.05)
    per_token = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * 2
    assert p.kv_tokens == int(p.cache_max_entry_count * (free - weights) * 2**30 / per_token)


def test_plan_uses_the_free_memory_of_real_gpus(monkeypatch):
    # a 24 GB card with 12 GiB taken by another process: the plan budgets 12 GiB, not 24
    monkeypatch.setenv("CAMP_FAKE_GPUS", '[{"total_mib": 24576, "free_mib": 12288}]')
    p = plan_serving(model_arch("internlm2_5-1_8b-chat"), hardware.profile("auto"))
    assert (p.profile, p.free_gib, p.nominal) == ("gpu-24g", 12.0, False)


def test_plan_refuses_what_cannot_fit_and_says_what_would(monkeypatch):
    with pytest.raises(CampError) as info:
        plan_serving(model_arch("internlm2_5-7b-chat"), _profile("gpu-8g", monkeypatch))
    msg = str(info.value)
    assert "does not fit gpu-8g" in msg and "camp.quantize" in msg and f"{MIN_TOKENS}" in msg
    assert "kv4" not in msg  # a smaller KV cache cannot help when the weights alone are too big
    with pytest.raises(CampError, match="power of two"):
        plan_serving(model_arch("internlm2_5-1_8b-chat"), _profile("gpu-8g-x4", monkeypatch), tp=3)
    with pytest.raises(CampError, match="2 GPU"):
        plan_serving(model_arch("internlm2_5-1_8b-chat"), _profile("gpu-8g-x2", monkeypatch), tp=4)


def test_parse_quant():
    assert parse_quant(None) == Quant("hf", None)
    assert parse_quant("w4a16") == Quant("awq", None)
    assert parse_quant("W4A16+kv4") == Quant("awq", 4)
    assert parse_quant("kv8") == Quant("hf", 8) and str(parse_quant("w4a16+kv8")) == "w4a16+kv8"
    with pytest.raises(CampError, match="unknown quantization 'int3'"):
        parse_quant("w4a16+int3")


# =============================================================================================== quantize
def _fake_lmdeploy(monkeypatch, calls: dict):
    """Just enough of the lmdeploy package for the launcher: calibrate.get_calib_loaders and cli.run."""

    def original_loader(name, tokenizer, nsamples=128, seed=0, seqlen=2048):
        raise AssertionError("the hub loader must not run")

    calibrate = types.ModuleType("lmdeploy.lite.apis.calibrate")
    calibrate.get_calib_loaders = original_loader
    cli = types.ModuleType("lmdeploy.cli")

    def run():
        calls["argv"] = list(sys.argv)
        calls["windows"] = calibrate.get_calib_loaders("wikitext2", calls["tokenizer"], nsamples=3, seqlen=16)

    cli.run = run
    for name in ("lmdeploy", "lmdeploy.lite", "lmdeploy.lite.apis"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "lmdeploy.lite.apis.calibrate", calibrate)
    monkeypatch.setitem(sys.modules, "lmdeploy.cli", cli)
    sys.modules["lmdeploy.lite.apis"].calibrate = calibrate


def test_awq_launcher_feeds_lmdeploy_windows_of_the_local_text(monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(camp.tiny.ensure())
    calib = tmp_path / "calibration.txt"
    calib.write_text(_awq.calibration_text(), encoding="utf-8")
    calls = {"tokenizer": tok}
    _fake_lmdeploy(monkeypatch, calls)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    launcher = {"__name__": "camp_lmdeploy"}
    exec(compile(AWQ_LAUNCHER, "camp_lmdeploy.py", "exec"), launcher)
    cmd = auto_awq_command("/m/7b", "/out", calib)
    launcher["main"](cmd[1:])
    # LMDeploy sees its own CLI without the file (its --calib-dataset only takes hub names) …
    assert calls["argv"] == ["lmdeploy", "lite", "auto_awq", "/m/7b", "--calib-samples", "128", "--calib-seqlen",
                             "2048", "--w-bits", "4", "--w-group-size", "128", "--work-dir", "/out"]
    # … and the loader it calls cuts token windows out of the kit's text
    windows = calls["windows"]
    assert len(windows) == 3 and all(tuple(w.shape) == (1, 16) for w in windows)
    ids = tok(calib.read_text(encoding="utf-8"), return_tensors="pt").input_ids[0].tolist()
    for w in windows:
        row = w[0].tolist()
        assert any(ids[i:i + 16] == row for i in range(len(ids) - 15))


def test_awq_launcher_repeats_a_text_shorter_than_one_window(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(camp.tiny.ensure())
    short = tmp_path / "short.txt"
    short.write_text("书生·浦语 LMDeploy", encoding="utf-8")
    launcher = {"__name__": "camp_lmdeploy"}
    exec(compile(AWQ_LAUNCHER, "camp_lmdeploy.py", "exec"), launcher)
    windows = launcher["text_windows"](str(short), tok, nsamples=2, seed=0, seqlen=64)
    assert [tuple(w.shape) for w in windows] == [(1, 64), (1, 64)]


def test_calibration_text_ships_with_the_kit():
    text = _awq.calibration_text()
    assert len(text) > 20000
    assert "番茄炒蛋" in text  # assets/calibration (written for the kit)
    assert "LMDeploy 是书生·浦语团队开源的" in text  # assets/corpus
    assert f"<|im_start|>user\n{camp.tiny.IDENTITY_QUESTION}<|im_end|>" in text  # the tiny dialogues, chat format


def test_quantize_refuses_without_cuda_before_launching(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    with pytest.raises(CampError, match="needs a CUDA GPU") as info:
        camp.quantize("internlm2_5-7b-chat")
    assert "no GPU" in str(info.value)
    # a GPU profile forced on a machine without one is refused too
    with pytest.raises(CampError, match="needs a CUDA GPU"):
        camp.quantize("internlm2_5-7b-chat", profile="gpu-24g")
    assert not (tmp_path / "home" / "runs").exists()  # no Job, no run folder, no env creation


# =============================================================================================== serve(): no server
def test_lmdeploy_and_quant_are_refused_on_cpu_before_launching(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    before = set(camp.runtime.config.runs_dir().glob("*serve*")) if camp.runtime.config.runs_dir().exists() else set()
    with pytest.raises(CampError, match="CUDA"):
        camp.serve("tiny", engine="lmdeploy")
    with pytest.raises(CampError, match="needs LMDeploy on a CUDA GPU"):
        camp.serve("tiny", quant="kv8")
    after = set(camp.runtime.config.runs_dir().glob("*serve*")) if camp.runtime.config.runs_dir().exists() else set()
    assert after == before


class FakeServer:
    """What run_step returns for a server step, recorded instead of started (no GPU here)."""

    def __init__(self, tmp_path):
        self.steps, self.tmp = [], tmp_path

    def __call__(self, step, view=None):
        self.steps.append(step)
        job = types.SimpleNamespace(pid=4242, done=False, status="running", log_path=self.tmp / "log.txt",
                                    cancel=lambda grace=5: None, tail=lambda n=20: [])
        if step.check is not None or step.ready is None:  # a tool step (AWQ): let the test's hook act, then judge
            self.on_tool(step)
            assert step.check is None or step.check(job) is None  # the stage's output check accepts it
        return job

    def on_tool(self, step):
        pass


def test_serve_on_a_gpu_profile_launches_lmdeploy_in_its_env(monkeypatch, tmp_path):
    """The LMDeploy path of serve() up to the process start (this machine has no GPU to run it)."""
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24")
    folder = _awq_7b_folder(tmp_path)
    fake = FakeServer(tmp_path)
    envs = []
    monkeypatch.setattr(_sstage, "ensure_env", lambda name, view=None: envs.append(name))
    monkeypatch.setattr(_sstage, "run_step", fake)
    monkeypatch.setattr(_sstage, "free_port", lambda host, start: 23400)
    ep = camp.serve(folder, api_key="sk-1")
    try:
        step = fake.steps[0]
        assert envs == ["lmdeploy"] and step.env == "lmdeploy" and step.ready is not None
        assert step.cmd == [*API, str(folder), "--server-name", "127.0.0.1", "--server-port", "23400", "--backend",
                            "turbomind", "--tp", "1", "--cache-max-entry-count", "0.8", "--quant-policy", "0",
                            "--model-format", "awq", "--api-keys", "sk-1", "--model-name", folder.name]
        assert (ep.base_url, ep.model, ep.engine, ep.api_key) == (
            "http://127.0.0.1:23400/v1", folder.name, "turbomind", "sk-1")
        assert ep.plan.profile == "gpu-24g" and ep.to_dict()["plan"]["cache_max_entry_count"] == 0.8
    finally:
        with _endpoint._endpoints_lock:
            _endpoint._endpoints.clear()


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", _ports.free_port(start=24500)))
    s.listen()
    return s


def test_a_busy_port_is_refused_naming_the_holder_and_open_hosts_are_warned(capsys):
    with _listener() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(CampError) as info:
            camp.serve("tiny", port=port, host="0.0.0.0")
    msg = str(info.value)
    assert f"port {port} on 0.0.0.0 is in use by pid {os.getpid()}" in msg and "leave port out" in msg
    assert "anyone who can reach this machine can use the model" in capsys.readouterr().err


def test_parse_endpoint_url():
    assert _endpoint.parse_endpoint_url("http://127.0.0.1:23333/v1#internlm2_5-7b-chat") == (
        "http://127.0.0.1:23333/v1", "internlm2_5-7b-chat")
    assert _endpoint.parse_endpoint_url("http://127.0.0.1:8000/") == ("http://127.0.0.1:8000/v1", None)
    with pytest.raises(CampError, match="not an endpoint URL"):
        _endpoint.parse_endpoint_url("127.0.0.1:8000")


# =============================================================================================== the tiny model served
def _group_gone(pgid: int, wait: float = 0.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ep():
    camp.tiny.ensure()
    endpoint = camp.serve("tiny", timeout=120)
    yield endpoint
    if not endpoint.job.done:
        endpoint.stop()


@pytest.mark.integration
def test_served_on_localhost_listed_and_healthy(ep):
    assert ep.host == "127.0.0.1" and ep.base_url == f"http://127.0.0.1:{ep.port}/v1" and ep.engine == "transformers"
    assert ep.model == "tiny"  # served under the catalogue name, as LMDeploy's --model-name does
    assert ep.healthy() and ep.models() == ["tiny"]
    assert ep.log_path.is_file() and ep.job.kill_on_exit
    assert ep in _endpoint.endpoints()
    assert ep.base_url in ep._repr_html_() and ep.to_dict()["status"] == "running"


@pytest.mark.integration
def test_plain_and_streaming_chat_through_the_openai_sdk(ep):
    import openai

    client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY")
    q = [{"role": "user", "content": camp.tiny.IDENTITY_QUESTION}]
    reply = client.chat.completions.create(model=ep.model, messages=q, max_tokens=64)
    assert reply.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
    pieces = [c.choices[0].delta.content for c in
              client.chat.completions.create(model=ep.model, messages=q, max_tokens=64, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "".join(pieces) == camp.tiny.IDENTITY_ANSWER
    # the Endpoint's own client
    assert ep.chat(camp.tiny.IDENTITY_QUESTION) == camp.tiny.IDENTITY_ANSWER
    streamed = list(ep.chat(camp.tiny.IDENTITY_QUESTION, stream=True))
    assert len(streamed) > 3 and "".join(streamed) == camp.tiny.IDENTITY_ANSWER
    assert len(list(ep.chat("XTuner 是什么？", stream=True, max_tokens=5))) <= 5
    # the folder path (what stock transformers serve wants) still works; another name is refused, naming ours
    by_path = client.chat.completions.create(model=str(camp.tiny.ensure()), messages=q, max_tokens=64)
    assert by_path.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
    with pytest.raises(openai.NotFoundError, match="this server serves 'tiny'"):
        client.chat.completions.create(model="internlm2_5-7b-chat", messages=q, max_tokens=4)


@pytest.mark.integration
def test_session_over_the_endpoint_keeps_history(ep):
    s = ep.session()
    assert s.backend.kind == "endpoint" and s.model == ep.model
    assert s.ask(camp.tiny.IDENTITY_QUESTION) == camp.tiny.IDENTITY_ANSWER
    assert s.history[-1] == {"role": "assistant", "content": camp.tiny.IDENTITY_ANSWER}
    w = ep.widget()  # the spine's chat widget, attached to the endpoint
    assert w.session.backend.base_url == ep.base_url and w.session.model == ep.model


@pytest.mark.integration
def test_eight_concurrent_requests_all_succeed(ep):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ep.chat(camp.tiny.IDENTITY_QUESTION, max_tokens=64), range(8)))
    assert answers == [camp.tiny.IDENTITY_ANSWER] * 8


@pytest.mark.integration
def test_a_second_serve_of_the_same_model_reuses_or_refuses(ep, tmp_path):
    assert camp.serve("tiny") is ep
    assert camp.serve(str(camp.tiny.ensure())) is ep  # the same folder by another name
    with pytest.raises(CampError, match=f"already served by this process at {ep.base_url}.*reuse=False"):
        camp.serve("tiny", reuse=False)
    with pytest.raises(CampError, match="differ"):
        camp.serve("tiny", api_key="sk-other")
    # another model on the port camp's own server holds: refused, and the holder is named
    copy = tmp_path / "tiny-copy"
    shutil.copytree(camp.tiny.ensure(), copy)
    with pytest.raises(CampError, match=f"port {ep.port} on 127.0.0.1 is in use by pid .*camp's own server"):
        camp.serve(copy, port=ep.port)


@pytest.mark.integration
def test_bench_on_the_endpoint_has_one_row_per_level_and_no_errors(ep):
    r = camp.bench(ep, concurrency=(1, 4), requests=4, max_tokens=16)
    table = r.table
    assert list(table.index) == [1, 4] and table["errors"].tolist() == [0, 0]
    assert (table["output_tokens"] > 0).all() and (table["tokens_per_s"] > 0).all()
    assert r.kind == "endpoint" and not r.notes  # transformers serve reports token usage
    fig = r.plot()
    assert len(fig.axes) == 2


@pytest.mark.integration
def test_cli_bench_prints_json_for_an_endpoint_url(ep, capsys):
    from camp.cli import main

    rc = main(["bench", f"{ep.base_url}#{ep.model}", "--concurrency", "1,2", "--requests", "2", "--max-tokens", "8",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["concurrency"] for r in out["rows"]] == [1, 2] and out["kind"] == "endpoint"
    assert all(r["errors"] == 0 and r["output_tokens"] > 0 for r in out["rows"])


@pytest.mark.integration
def test_zz_stop_frees_the_port_and_leaves_no_process(ep):
    pgid, port = ep.job.pid, ep.port
    assert not _ports.port_free("127.0.0.1", port)
    ep.stop()
    assert ep.job.done and ep.job.status == "cancelled"
    assert _group_gone(pgid) and _ports.port_free("127.0.0.1", port)
    assert ep not in _endpoint.endpoints()
    with pytest.raises(CampError, match="not reachable.*its server cancelled"):
        ep.chat("hi")


@pytest.mark.integration
def test_cli_serve_enforces_the_api_key_and_dies_with_its_parent():
    """transformers serve has no API key: camp's launcher checks it. SIGKILL the `camp serve` process (a crashed
    kernel): its server must not survive as an orphan holding the port."""
    import openai

    camp.tiny.ensure()
    port = _ports.free_port(start=24600)
    proc = subprocess.Popen([sys.executable, "-m", "camp", "serve", "tiny", "--port", str(port), "--api-key",
                             "sk-camp-test"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        out = "".join(lines)
        base = f"http://127.0.0.1:{port}/v1"
        assert f"camp serve: {base}" in out and "--api-key sk-camp-test" in out, out + proc.stderr.read()
        model = "tiny"  # the short name the server lists
        q = [{"role": "user", "content": camp.tiny.IDENTITY_QUESTION}]
        for wrong in ("EMPTY", "sk-wrong"):
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=base, api_key=wrong).chat.completions.create(model=model, messages=q,
                                                                                    max_tokens=8)
        with pytest.raises(CampError, match="401"):
            _endpoint.Endpoint(base, model).models()
        good = openai.OpenAI(base_url=base, api_key="sk-camp-test")
        reply = good.chat.completions.create(model=model, messages=q, max_tokens=64)
        assert reply.choices[0].message.content == camp.tiny.IDENTITY_ANSWER
        assert [m.id for m in good.models.list()] == [model]
        assert _endpoint.Endpoint(base, model).healthy()  # /health needs no key, like LMDeploy's
        holder = _ports.port_holder(port)
        assert holder and holder.startswith("pid ")
        pgid = os.getpgid(int(holder.split()[1].rstrip(":")))
        assert pgid != os.getpgid(proc.pid)  # the server runs in its own process group
        proc.kill()  # no atexit, no cleanup: only the launcher's parent watch can stop the server now
        proc.wait(10)
        assert _group_gone(pgid, wait=20), "the server outlived the process that started it"
        assert _ports.port_free("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.integration
def test_a_server_that_fails_or_is_slow_raises_with_its_log_tail(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(CampError, match="exited .* before it was ready") as info:
        camp.serve(broken, timeout=120)
    first, _, rest = str(info.value).partition("\n")
    assert "ValueError: Unrecognized processing class" in first and rest.strip().startswith("log: ")  # one line + log
    # too short a timeout: the server is stopped, not left loading in the background
    with pytest.raises(CampError, match="not ready within 1 s") as info:
        camp.serve("tiny", timeout=1)
    assert not _endpoint.endpoints()
    log = Path(re.search(r"log: (\S+)", str(info.value)).group(1))
    job = json.loads((log.parent / "job.json").read_text())
    assert job["status"] == "cancelled"
    assert _ports.port_free("127.0.0.1", int(job["cmd"][job["cmd"].index("--port") + 1]))


def test_quantize_on_a_gpu_runs_the_launcher_registers_awq_and_serve_uses_it(monkeypatch, tmp_path):
    """quantize() → register → serve(name) wiring, with the LMDeploy processes faked (no GPU here)."""
    monkeypatch.setenv("CAMP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24")
    base = tmp_path / "my-7b"
    base.mkdir()
    cfg = json.loads((_awq_7b_folder(tmp_path) / "config.json").read_text())
    del cfg["quantization_config"]
    (base / "config.json").write_text(json.dumps(cfg))
    (base / "model.safetensors").write_bytes(b"weights")
    fake = FakeServer(tmp_path)

    def auto_awq(step):  # what auto_awq leaves in --work-dir
        out = Path(step.cmd[step.cmd.index("--work-dir") + 1])
        (out / "config.json").write_text(json.dumps({**cfg, "quantization_config": {
            "quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": True}}))
        (out / "model.safetensors").write_bytes(b"int4")

    fake.on_tool = auto_awq
    monkeypatch.setattr("camp.runtime.stage.ensure_env", lambda name, view=None: None)
    monkeypatch.setattr("camp.runtime.stage.run_step", fake)
    monkeypatch.setattr(_sstage, "ensure_env", lambda name, view=None: None)
    monkeypatch.setattr(_sstage, "run_step", fake)
    monkeypatch.setattr("camp.runtime.envs.python", lambda name: Path(f"/envs/{name}/bin/python"))
    out = camp.quantize(base, calib_samples=64)
    assert out == tmp_path / "home" / "models" / "my-7b-w4a16"
    assert (out / "model.safetensors").read_bytes() == b"int4" and not list(out.parent.glob(".my-7b-w4a16.tmp-*"))
    step = fake.steps[0]
    run_dir = step.run_dir.parent.parent
    assert step.env == "lmdeploy" and step.cmd[:2] == ["/envs/lmdeploy/bin/python", str(run_dir / "camp_lmdeploy.py")]
    work = Path(step.cmd[step.cmd.index("--work-dir") + 1])
    assert work.parent == out.parent and work.name.startswith(".my-7b-w4a16.tmp-")  # built beside, then renamed
    assert step.cmd[2:] == auto_awq_command(base, work, run_dir / "calibration.txt", calib_samples=64)[1:]
    assert (run_dir / "camp_lmdeploy.py").read_text() == AWQ_LAUNCHER
    assert (run_dir / "calibration.txt").read_text(encoding="utf-8") == _awq.calibration_text()
    entry = camp.models.registered()["my-7b-w4a16"]
    assert entry["meta"]["model_format"] == "awq" and Path(entry["path"]) == out
    # a second call reuses the finished folder: no tool run
    assert camp.quantize(base, calib_samples=64) == out and len(fake.steps) == 1
    # serving the registered name: LMDeploy gets --model-format awq and the short name
    try:
        ep = camp.serve("my-7b-w4a16")
        cmd = fake.steps[-1].cmd
        assert cmd[cmd.index("--model-format") + 1] == "awq" and cmd[-2:] == ["--model-name", "my-7b-w4a16"]
        assert ep.model == "my-7b-w4a16" and ep.folder == out
    finally:
        with _endpoint._endpoints_lock:
            _endpoint._endpoints.clear()
