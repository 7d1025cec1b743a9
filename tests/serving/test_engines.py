"""The engines' command lines: exact LMDeploy 0.18 `serve api_server` per profile, `transformers serve`, `lite auto_awq`.
"""

from __future__ import annotations

import pytest

from camp.runtime.errors import CampError
from camp.serving.engines.lmdeploy import auto_awq_command, lmdeploy_serve_command
from camp.serving.engines.transformers import tool_command as transformers_serve_command
from camp.serving.memory import plan_serving
from camp.training.plan import arch_from_config, model_arch
from tests.serving.shared import API, _awq_7b_folder, _profile


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
