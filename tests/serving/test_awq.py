"""camp.quantize: the AWQ launcher with a local calibration file, refusals without CUDA, and on a (faked) GPU the
whole wiring: launcher → a folder built beside its place → registered → served as AWQ.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

import camp
import camp.serving.awq as _awq
import camp.serving.endpoint as _endpoint
import camp.serving.stage as _sstage
from camp.runtime.errors import CampError
from camp.serving.engines.lmdeploy import AWQ_LAUNCHER, auto_awq_command
from tests.serving.shared import FakeServer, _awq_7b_folder


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


@pytest.mark.integration  # runs the real tool (pip / ModelScope / LMDeploy's launcher / git): seconds
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
