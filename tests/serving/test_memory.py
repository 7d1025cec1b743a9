"""The serving memory plan behind LMDeploy's flags (camp.serving.memory).
"""

from __future__ import annotations

import pytest

from camp.runtime import hardware
from camp.runtime.errors import CampError
from camp.serving.memory import MIN_TOKENS, Quant, parse_quant, plan_serving
from camp.training.plan import model_arch
from tests.serving.shared import _profile


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
