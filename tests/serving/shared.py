"""What the serving tests share: profiles planned at their nominal size, an AWQ 7B folder, a fake server.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import camp
import camp.serving.endpoint as _endpoint
import camp.serving.stage as _sstage
from camp.runtime import hardware

API = ["lmdeploy", "serve", "api_server"]


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
