"""Profile choice from GPU inventories (simulated: no GPU needed), CAMP_FAKE_GPUS, nvidia-smi parsing."""

from __future__ import annotations

import json
import os
import stat

import pytest

from camp import models
from camp.runtime import hardware
from camp.runtime.errors import CampError
from camp.runtime.hardware import GPU


def gpus(*mib: int) -> list[GPU]:
    return [GPU(i, f"GPU{i}", m, m) for i, m in enumerate(mib)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("CAMP_FAKE_GPUS", "CAMP_PROFILE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "inventory, expected",
    [
        ((), "cpu-tiny"),
        ((8192,), "gpu-8g"),  # InternStudio 10% A100 slice
        ((15360,), "gpu-8g"),  # T4 16 GB: too small for 7B LoRA
        ((24564,), "gpu-24g"),  # RTX 4090 as nvidia-smi reports it
        ((24576,), "gpu-24g"),  # 30% A100 slice
        ((32510,), "gpu-24g"),  # V100-32G
        ((40960,), "gpu-40g"),  # 50% A100 slice / A100-40G
        ((49140,), "gpu-40g"),  # A6000 48 GB
        ((81920,), "gpu-80g"),  # A100-80G
        ((81559,), "gpu-80g"),  # H100-80G reports a little less
        ((143771,), "gpu-80g"),  # H200
        ((81920, 81920), "gpu-80g-x2"),
        ((24564,) * 4, "gpu-24g-x4"),
        ((81920, 24564), "gpu-24g-x2"),  # mixed: the smallest decides
        ((4096,), "cpu-tiny"),  # a 4 GB laptop GPU cannot hold the course models
    ],
)
def test_choose_profile(inventory, expected):
    assert hardware.choose_profile(gpus(*inventory)) == expected


def test_fake_gpus_comma_list(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "80,80")
    found = hardware.detect_gpus()
    assert [(g.index, g.total_mib, g.free_mib) for g in found] == [(0, 81920, 81920), (1, 81920, 81920)]
    assert hardware.profile().name == "gpu-80g-x2"


@pytest.mark.parametrize("spec", ["", "none", "0", "[]"])
def test_fake_gpus_none(monkeypatch, spec):
    monkeypatch.setenv("CAMP_FAKE_GPUS", spec)
    assert hardware.detect_gpus() == []
    p = hardware.profile()
    assert (p.name, p.device, p.dtype, p.default_model) == ("cpu-tiny", "cpu", "float32", "tiny")


def test_fake_gpus_json(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", json.dumps([
        {"name": "NVIDIA A100-SXM4-80GB", "total_mib": 81920, "free_mib": 20000},
        {"name": "Tesla V100-SXM2-32GB", "total_gib": 32},
        24,
    ]))
    found = hardware.detect_gpus()
    assert [g.name for g in found][:2] == ["NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-32GB"]
    assert found[1].total_mib == found[1].free_mib == 32768
    assert found[2].total_mib == 24576
    p = hardware.profile()
    assert p.name == "gpu-24g-x3"
    assert p.dtype == "float16"  # a V100 has no fast bf16
    assert any("GPU 0 has only" in n for n in p.notes)  # 20000 of 81920 MiB free: someone else uses it


def test_fake_gpus_garbage_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "lots")
    with pytest.raises(CampError, match="CAMP_FAKE_GPUS"):
        hardware.detect_gpus()


def test_profile_env_override_and_named(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    monkeypatch.setenv("CAMP_PROFILE", "gpu-40g")
    p = hardware.profile()
    assert (p.name, p.device, p.dtype, p.default_model) == ("gpu-40g", "cuda", "bfloat16", "internlm2_5-7b-chat")
    assert any("cpu-tiny" in n for n in p.notes)  # says the machine does not look like that
    # an explicit name wins over CAMP_PROFILE
    assert hardware.profile("gpu-8g").name == "gpu-8g"
    assert hardware.profile("GPU-80G-X2").to_dict()["gpu_count"] == 2


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(CampError) as e:
        hardware.profile("gpu-16g")
    msg = str(e.value)
    for name in ("cpu-tiny", "gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g", "-x"):
        assert name in msg


def test_profile_to_dict_is_json(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24")
    d = json.loads(json.dumps(hardware.profile().to_dict()))
    assert d["name"] == "gpu-24g" and d["memory_gb"] == 24 and d["gpus"][0]["total_mib"] == 24576


@pytest.mark.parametrize("base", ["cpu-tiny", "gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g"])
def test_default_model_fits_profile(base):
    p = hardware.profile(base)
    m = models.get(p.default_model)
    if base == "cpu-tiny":
        assert m.name == "tiny"
    else:
        assert m.memory_gb["chat"] <= p.memory_gb, (base, m.name)
        assert m.memory_gb["qlora"] <= p.memory_gb  # the fine-tuning lesson can run at least QLoRA


def _fake_smi(tmp_path, monkeypatch, body: str):
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_nvidia_smi_is_parsed(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, 'cat <<EOF\n0, NVIDIA A100-SXM4-80GB, 81920, 81000\n'
                                     '1, NVIDIA A100-SXM4-80GB, 81920, 1000\nEOF\n')
    found = hardware.detect_gpus(refresh=True)
    assert [(g.index, g.name, g.total_mib, g.free_mib) for g in found] == [
        (0, "NVIDIA A100-SXM4-80GB", 81920, 81000), (1, "NVIDIA A100-SXM4-80GB", 81920, 1000)]
    assert hardware.profile(refresh=True).name == "gpu-80g-x2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # what torch would see
    assert [g.index for g in hardware.detect_gpus(refresh=True)] == [1]
    assert hardware.profile(refresh=True).name == "gpu-80g"


def test_failing_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, 'echo "NVIDIA-SMI has failed because it could not communicate" >&2\nexit 9\n')
    assert hardware.detect_gpus(refresh=True) == []
    p = hardware.profile(refresh=True)
    assert p.name == "cpu-tiny"
    assert any("lists no GPU" in n for n in p.notes)
