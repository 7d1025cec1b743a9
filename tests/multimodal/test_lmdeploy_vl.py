"""LMDeploy's VLM command lines for each GPU profile, compared whole (LMDeploy 0.18 option names)."""

from __future__ import annotations

import pytest

import camp
from camp.multimodal import lmdeploy_vl
from camp.runtime.errors import CampError


def _serve(name, cache, session, model_dir="/share/m"):
    return ["lmdeploy", "serve", "api_server", model_dir, "--server-name", "127.0.0.1", "--server-port", "23333",
            "--backend", "turbomind", "--tp", "1", "--cache-max-entry-count", cache, "--quant-policy", "0",
            "--model-format", "hf", "--model-name", name, "--session-len", session]


@pytest.mark.parametrize("profile, cache", [("gpu-8g", "0.15"), ("gpu-24g", "0.7"), ("gpu-40g", "0.8"),
                                            ("gpu-80g", "0.8"), ("gpu-24g-x2", "0.7")])
def test_internvl2_serve_command(profile, cache):
    cmd = lmdeploy_vl.serve_command("internvl2-2b", "/share/m", camp.profile(profile))
    assert cmd == _serve("internvl2-2b", cache, "8192")


@pytest.mark.parametrize("profile, cache", [("gpu-24g", "0.35"), ("gpu-40g", "0.65"), ("gpu-80g", "0.8")])
def test_xcomposer2_serve_command(profile, cache):
    cmd = lmdeploy_vl.serve_command("xcomposer2", "/share/m", camp.profile(profile))
    assert cmd == _serve("internlm-xcomposer2-7b", cache, "4096")


def test_api_key_and_port():
    cmd = lmdeploy_vl.serve_command("InternVL2-2B", "/m", camp.profile("gpu-24g"), port=24000, api_key="sk-1")
    assert cmd[cmd.index("--server-port") + 1] == "24000"
    assert cmd[cmd.index("--api-keys") + 1] == "sk-1" and cmd.index("--api-keys") < cmd.index("--model-name")


def test_memory_plan_counts_the_vision_tower_and_image_tokens():
    from camp.serving import memory
    from camp.training.plan import model_arch

    text = memory.plan_serving(model_arch("internvl2-2b"), camp.profile("gpu-8g"))
    vl = lmdeploy_vl.plan("internvl2-2b", camp.profile("gpu-8g"))
    assert vl.weights_gib == pytest.approx(2.21e9 * 2 / 2**30, rel=1e-3)  # the whole model, tower included
    assert vl.runtime_gib == pytest.approx(text.runtime_gib + 1.0)
    assert vl.cache_max_entry_count < text.cache_max_entry_count
    assert vl.kv_tokens >= 13 * 256 + memory.MIN_TOKENS
    assert "3328 image tokens" in str(vl)


def test_too_small_profiles_are_refused():
    with pytest.raises(CampError, match="does not fit gpu-8g"):
        lmdeploy_vl.serve_command("internlm-xcomposer2-7b", "/m", camp.profile("gpu-8g"))
    with pytest.raises(CampError, match="not a course vision-language model"):
        lmdeploy_vl.serve_command("internlm2_5-7b-chat", "/m", camp.profile("gpu-24g"))


def test_pipeline_arguments_and_script():
    args = lmdeploy_vl.pipeline_args("internvl2-2b", "/m", camp.profile("gpu-24g"), ["a.png", "b.png"],
                                     ["描述这张图片。", "写一首诗"], "out.json")
    assert args == ["/m", "--backend", "turbomind", "--tp", "1", "--session-len", "8192",
                    "--cache-max-entry-count", "0.7", "--out", "out.json", "--image", "a.png", "--prompt",
                    "描述这张图片。", "--image", "b.png", "--prompt", "写一首诗"]
    compile(lmdeploy_vl.SCRIPT, "vl_pipeline.py", "exec")
    assert "from lmdeploy.vl import load_image" in lmdeploy_vl.SCRIPT
    with pytest.raises(CampError, match="one prompt per image"):
        lmdeploy_vl.pipeline_args("internvl2-2b", "/m", camp.profile("gpu-24g"), ["a.png"], [], "o")


def test_pipeline_needs_a_gpu(tmp_path):
    with pytest.raises(CampError, match="needs a CUDA GPU"):
        lmdeploy_vl.pipeline("internvl2-2b", tmp_path / "x.png", "hi", profile="cpu-tiny", run_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_camp_serve_passes_the_vl_plan(monkeypatch, tmp_path):
    """camp.serve on a GPU profile builds LMDeploy's command with the VLM plan and --session-len."""
    import json

    from camp.multimodal import serving

    folder = tmp_path / "InternVL2-2B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "internvl_chat", "vision_config": {},
                                                    "llm_config": {"hidden_size": 2048}}))
    assert serving.lmdeploy_extra("internvl2-2b", folder) == ["--session-len", "8192"]
    assert serving.lmdeploy_plan("internvl2-2b", folder, camp.profile("gpu-24g")).cache_max_entry_count == 0.7
    text = tmp_path / "text"
    text.mkdir()
    (text / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert serving.lmdeploy_extra("tiny", text) == [] and serving.lmdeploy_plan("tiny", text, None) is None
