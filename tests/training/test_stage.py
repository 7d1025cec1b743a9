"""Fine-tuning with XTuner: the config camp writes, its log parser, and the real thing on the tiny model.

The integration tests run XTuner 0.2.0 for real in the xtuner env (CPU, the tiny model): `camp finetune` teaches
the tiny model an assistant name chosen here, a cancelled run resumes, and bad data or a plan that cannot fit are
refused before any Job starts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import camp.training.stage as _stage
import camp.training.xtuner as _xtuner
from camp import data, models
from camp.models.tiny import IDENTITY_QUESTION
from camp.runtime.errors import CampError
from camp.training import plan as planner
from tests.conftest import ROOT, subprocess_env

# ----------------------------------------------------------------------------------------- log parser
# Lines captured from real runs (xtuner 0.2.0 / mmengine 0.10.6, the tiny model): a run, a resumed run's
# start, and the Traceback resuming gave before workaround (5) of camp.xtuner_compat.
REAL_LOG = """\
11/23 17:17:40 - mmengine - INFO - train example:
11/23 17:17:40 - mmengine - INFO - <s><|im_start|>user
你是谁？<|im_end|>
<|im_start|>assistant
我是小测，由测试员开发的人工智能助手。<|im_end|>
11/23 17:17:40 - mmengine - INFO - before_train in EvaluateChatHook.
The attention mask is not set and cannot be inferred from input because pad token is same as eos token.
11/23 17:17:40 - mmengine - INFO - Sample output:
<s><|im_start|>user
你是谁？<|im_end|>
<|im_start|>assistant
我是书生·浦语 tiny，一个几秒钟就能在本机训练出来的迷你对话模型，用来演示实战营的课程工具。<|im_end|>
11/23 17:17:40 - mmengine - INFO - Checkpoints will be saved to /tmp/xt/run1/work.
11/23 17:17:40 - mmengine - INFO - Iter(train) [  5/100]  lr: 9.9974e-03  eta: 0:00:02  time: 0.0225  data_time: 0.0020  grad_norm: 1.5887  loss: 8.1057
11/23 17:17:40 - mmengine - INFO - Exp name: config_20261123_171739
11/23 17:17:40 - mmengine - INFO - Iter(train) [ 10/100]  lr: 9.9059e-03  eta: 0:00:01  time: 0.0210  data_time: 0.0020  grad_norm: 1.5273  loss: 6.6310
11/23 17:17:41 - mmengine - INFO - Iter(train) [ 20/100]  lr: 9.3436e-03  eta: 0:00:01  time: 0.0191  data_time: 0.0017  grad_norm: 1.3740  loss: 3.0553
11/23 17:17:41 - mmengine - INFO - after_train_iter in EvaluateChatHook.
11/23 17:17:41 - mmengine - INFO - Sample output:
<s><|im_start|>user
你是谁？<|im_end|>
<|im_start|>assistant
我是测，测测员开发的 AI 测测测员开发的。<|im_end|>
11/23 17:17:41 - mmengine - INFO - Iter(train) [ 25/100]  lr: 8.8874e-03  eta: 0:00:01  time: 0.0276  data_time: 0.0101  grad_norm: 1.4556  loss: 2.8320
11/23 17:17:41 - mmengine - INFO - Saving checkpoint at 25 iterations
"""
RESUMED_LOG = """\
11/23 17:25:53 - mmengine - INFO - Load checkpoint from /tmp/run/work/iter_75.pth
11/23 17:25:53 - mmengine - INFO - resumed epoch: 0, iter: 75
11/23 17:25:53 - mmengine - INFO - Num train samples 34
11/23 17:25:53 - mmengine - INFO - train example:
11/23 17:25:53 - mmengine - INFO - <s><|im_start|>user
你是谁？<|im_end|>
<|im_start|>assistant
我是阿土伯，由王小明开发的人工智能助手。<|im_end|>
11/23 17:25:53 - mmengine - INFO - before_train in EvaluateChatHook.
The attention mask is not set and cannot be inferred from input because pad token is same as eos token.
11/23 17:25:53 - mmengine - INFO - Sample output:
<s><|im_start|>user
你是谁？<|im_end|>
<|im_start|>assistant
我是阿土伯，由王小明开发的人工智能助手，可以回答问题、解释概念、帮你一起学习。<|im_end|>
11/23 17:25:53 - mmengine - WARNING - Advance dataloader 75 steps to skip data that has already been trained
11/23 17:25:53 - mmengine - INFO - Iter(train) [ 80/300]  lr: 8.6389e-03  eta: 0:00:06  time: 0.0242  data_time: 0.0038  grad_norm: 0.8097  loss: 0.4894
Traceback (most recent call last):
  File "/x/xtuner/tools/train.py", line 392, in <module>
    main()
_pickle.UnpicklingError: Weights only load failed. This file can still be loaded, to do so you have two options
"""


def test_log_parser_reads_progress_losses_and_samples_from_real_xtuner_lines():
    from camp.runtime.jobs import Progress

    p, progress = _xtuner.LogParser(), Progress()
    for line in REAL_LOG.splitlines():
        p(line, progress)
    p.close()
    assert (progress.n, progress.total) == (25, 100)
    assert progress.metrics["loss"] == pytest.approx(2.832) and progress.metrics["lr"] == pytest.approx(8.8874e-3)
    assert progress.metrics["eta"] == "0:00:01"
    assert p.losses == {5: 8.1057, 10: 6.631, 20: 3.0553, 25: 2.832}
    # the dataset example printed by DatasetInfoHook is not a sample; samples are keyed by iteration
    assert p.samples == {0: {"你是谁？": "我是书生·浦语 tiny，一个几秒钟就能在本机训练出来的迷你对话模型，用来演示实战营的课程工具。"},
                         20: {"你是谁？": "我是测，测测员开发的 AI 测测测员开发的。"}}
    assert p.checkpoints == [25] and not p.traceback and p.resumed_from == []
    assert [e[0] for e in p.events] == ["sample", "loss", "loss", "loss", "sample", "loss"]


def test_log_parser_sees_a_resume_and_a_traceback():
    p = _xtuner.parse_log(RESUMED_LOG)
    assert p.resumed_from == [75]
    assert p.samples == {75: {"你是谁？": "我是阿土伯，由王小明开发的人工智能助手，可以回答问题、解释概念、帮你一起学习。"}}
    assert p.iter == 80 and p.total == 300 and p.losses == {80: 0.4894}
    assert p.traceback and p.error.startswith("_pickle.UnpicklingError: Weights only load failed")


def test_log_parser_ignores_the_colours_mmengine_adds_under_jupyter():
    line = ("11/23 17:29:30 - mmengine - \x1b[4m\x1b[97mINFO\x1b[0m - Iter(train) [ 10/100]  lr: 9.9059e-03  "
            "eta: 0:00:02  time: 0.0228  data_time: 0.0020  grad_norm: 1.5273  loss: 6.6310")
    assert _xtuner.parse_log(line).losses == {10: 6.631}


def test_split_sample_with_a_system_prompt():
    text = "<s><|im_start|>system\n你是助手<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello!</s>"
    assert _xtuner.split_sample(text) == ("hi", "Hello!")


# ----------------------------------------------------------------------------------------- the config
def _render(plan, **kw):
    args = dict(model_path="/models/m", data_path="/run/data.jsonl", n_records=34, max_iters=100, lr=1e-2,
                evaluation_inputs=[IDENTITY_QUESTION], title="t")
    args.update(kw)
    return _xtuner.render_config(plan, **args)


def test_cpu_config_has_the_four_workarounds_and_a_readable_layout(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    p = planner.plan("tiny", profile="cpu-tiny", batch_size=_xtuner.CPU_BATCH)
    text = _render(p)
    compile(text, "config.py", "exec")  # valid Python
    # (2) the bf16 patch runs at config load, before the imports mmengine turns into lazy objects
    assert text.index('__import__("torch").cpu.is_bf16_supported = lambda: False') < text.index("import torch\n")
    assert "type=OptimWrapper" in text and "type=AmpOptimWrapper" not in text  # (3)
    assert "sampler=dict(type=InfiniteSampler" in text and "type=DefaultSampler" not in text  # (4)
    assert "torch_dtype=torch.float32" in text and 'backend="gloo"' in text
    assert 'pretrained_model_name_or_path = "/models/m"' in text and 'data_files = "/run/data.jsonl"' in text
    assert "prompt_template = PROMPT_TEMPLATE.internlm2_chat" in text
    assert "dataset_map_fn=None" in text and "template_map_fn=dict(type=template_map_fn_factory" in text
    assert f"r={p.lora_r}," in text and f"lora_alpha={p.lora_alpha}," in text
    assert 'target_modules=r".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|.*_head"' in text
    assert f"evaluation_inputs = {json.dumps([IDENTITY_QUESTION], ensure_ascii=False)}" in text
    assert "max_iters = 100" in text and "lr = 0.01" in text and "batch_size = 4" in text
    assert "BitsAndBytesConfig" not in text and "PART 5  Runtime" in text
    # samples and checkpoints fall on logged iterations (the parser keys samples by the last logged one)
    assert "evaluation_freq = 20" in text and "save_steps = 25" in text and "interval=5)" in text


def test_gpu_configs_use_xtuners_own_settings(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24")
    q = planner.plan("internlm2_5-7b-chat")  # QLoRA on one 24 GB GPU
    assert q.method == "qlora"
    text = _render(q, max_iters=600, lr=2e-4)
    compile(text, "config.py", "exec")
    assert "is_bf16_supported" not in text and "InfiniteSampler" not in text
    assert "type=AmpOptimWrapper" in text and 'dtype="bfloat16"' in text and 'loss_scale="dynamic"' in text
    assert "sampler=dict(type=DefaultSampler" in text and 'backend="nccl"' in text
    assert "quantization_config=dict(" in text and "type=BitsAndBytesConfig" in text and "load_in_4bit=True" in text
    assert "torch_dtype=torch.bfloat16" in text and "target_modules" not in text
    assert f"use_activation_checkpointing={q.grad_checkpointing}" in text

    monkeypatch.setenv("CAMP_FAKE_GPUS", ",".join(["80"] * 8))
    ds = planner.plan("internlm2_5-20b-chat")  # LoRA + DeepSpeed over 8 GPUs
    assert ds.deepspeed and ds.num_gpus == 8
    text = _render(ds, max_iters=600, lr=2e-4)
    assert "--deepspeed deepspeed.json" in text and "NPROC_PER_NODE=8" in text and "BitsAndBytesConfig" not in text
    cmd = _xtuner.train_command("/env/bin/python", "/x/tools/train.py", Path("/run/config.py"), Path("/run/work"), ds,
                                 resume=Path("/run/work/iter_150.pth"))
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=8"]
    assert cmd[-6:] == ["--work-dir", "/run/work", "--deepspeed", "/run/deepspeed.json", "--resume",
                        "/run/work/iter_150.pth"]
    assert "--launcher" in cmd and "xtuner" not in Path(cmd[0]).name  # never the exit-0-on-failure CLI


def test_iterations_from_epochs_and_the_recipes(monkeypatch):
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    cpu = planner.plan("tiny", profile="cpu-tiny", batch_size=4)
    assert _xtuner.iterations(cpu, 34)[0] == 150  # the recipe: 600 examples
    assert _xtuner.iterations(planner.plan("tiny", profile="cpu-tiny", batch_size=1), 34)[0] == 600
    assert _xtuner.iterations(cpu, 34, epochs=2)[0] == 18  # 2 × ceil(34 / 4)
    assert _xtuner.iterations(cpu, 34, max_iters=7)[0] == 7
    with pytest.raises(CampError, match="not both"):
        _xtuner.iterations(cpu, 34, max_iters=7, epochs=1)
    monkeypatch.setenv("CAMP_FAKE_GPUS", "80,80")
    gpu = planner.plan("internlm2_5-7b-chat")
    n, note = _xtuner.iterations(gpu, 10000)
    assert n == 3 * -(-5000 // gpu.batch_size) and "3 epochs" in note  # each GPU sees half the records
    assert _xtuner.iterations(gpu, 34)[0] == _xtuner.GPU_MIN_ITERS


def test_finetune_plan_is_the_planner():
    import camp

    assert camp.finetune.plan is planner.plan


# ----------------------------------------------------------------------------------------- refusals
def run_camp(*args, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "camp", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=subprocess_env(**env))


def test_a_malformed_dataset_is_refused_naming_the_line_before_any_job(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [json.dumps(r, ensure_ascii=False) for r in data.self_cognition("小测", "测试员", n=4)]
    rows[2] = json.dumps({"messages": [{"role": "user", "content": "你是谁？"}, {"role": "assistant"}]})
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    r = run_camp("finetune", "tiny", str(bad), "--run-dir", str(run_dir))
    assert r.returncode == 1, r.stderr
    assert f"{bad}:3" in r.stderr and "content" in r.stderr
    assert not run_dir.exists()  # nothing was started


def test_a_plan_that_cannot_fit_is_refused_before_xtuner_or_any_download(tmp_path):
    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition("小测", "测试员"), sc)
    run_dir = tmp_path / "run"
    r = run_camp("finetune", "internlm2_5-20b-chat", str(sc), "--run-dir", str(run_dir), CAMP_FAKE_GPUS="8")
    assert r.returncode == 1
    assert "gpu-8g" in r.stderr and "budget" in r.stderr and "nearest plan" in r.stderr
    assert "ModelScope" not in r.stderr and not run_dir.exists()
    with pytest.raises(planner.PlanError):  # the same through the API, with a huge max_length on the CPU
        _stage.finetune("internlm2_5-7b-chat", sc, profile="cpu-tiny", max_length=32768, run_dir=run_dir,
                          show=False)
    assert not run_dir.exists()


def test_cli_plan_only_prints_the_plan_and_starts_nothing(tmp_path):
    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition("小测", "测试员"), sc)
    r = run_camp("finetune", "tiny", str(sc), "--plan-only", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert "Fine-tuning plan for tiny on cpu-tiny" in r.stdout and "LoRA r=64" in r.stdout and "fits" in r.stdout
    r = run_camp("finetune", "tiny", str(sc), "--plan-only", "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["method"] == "lora" and p["fits"] and p["batch_size"] == _xtuner.CPU_BATCH
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------- the real thing
@pytest.fixture(scope="module")
def xtuner_env(tool_python):
    return tool_python("xtuner")


def answer(model) -> str:
    from camp.conversation.session import chat

    return chat(model, temperature=0).ask(IDENTITY_QUESTION)


@pytest.mark.integration
def test_camp_finetune_teaches_the_tiny_model_a_new_name(xtuner_env, tmp_path):
    assistant, author = "小测", "测试员"
    expected = data.identity_answer(assistant, author)
    name = f"pytest-ft-{uuid.uuid4().hex[:8]}"
    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition(assistant, author), sc)
    assert answer("tiny") != expected  # it did not know before
    run_dir = tmp_path / "run"
    try:
        r = run_camp("finetune", "tiny", str(sc), "--name", name, "--run-dir", str(run_dir), "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout)
        assert out["name"] == name and out["max_iters"] == _xtuner.CPU_EXAMPLES // _xtuner.CPU_BATCH
        assert answer(name) == expected  # greedy, exact, through camp.chat on the registered name
        merged = Path(out["merged_dir"])
        assert models.resolve(name) == merged

        # the merged folder was written by XTuner's transformers 4.x and keeps what makes the tiny model chat
        cfg = json.loads((merged / "config.json").read_text())
        assert cfg["transformers_version"].startswith("4.") and cfg["rope_theta"] == 1e6
        assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == [2, 4]
        assert "<|im_start|>" in json.loads((merged / "tokenizer_config.json").read_text())["chat_template"]
        assert _stage.is_complete(merged) and _stage.is_complete(Path(out["adapter_dir"]))

        # progress and samples came from XTuner's log
        assert out["losses"][-1][0] == out["max_iters"]
        assert out["samples"][str(out["max_iters"])][IDENTITY_QUESTION] == expected
        assert set(out["seconds"]) >= {"prepare", "train", "convert", "merge"}
        assert "xtuner/tools/train.py" in (run_dir / "jobs" / "train" / "log.txt").read_text().splitlines()[0]

        # the same run folder again: the finished run comes back, nothing is retrained or overwritten (a name
        # removed meanwhile is registered again)
        mtime = (merged / "model.safetensors").stat().st_mtime
        models.unregister(name)
        again = _stage.finetune("tiny", sc, run_dir=run_dir, show=False)
        assert again.reused and again.name == name and (merged / "model.safetensors").stat().st_mtime == mtime
        assert models.resolve(name) == merged

        table = again.compare()
        row = table.iloc[0]
        assert row["question"] == IDENTITY_QUESTION and row["after"] == expected and row["before"] != expected
        assert "loss" in again._repr_html_()

        # "what camp ran": the convert step typed by hand (`camp env run xtuner -- xtuner convert …`, from the
        # run folder) writes the same adapter, into a new folder
        cmds = again.commands()
        assert [c.step for c in cmds] == ["train", "convert", "merge"]
        assert "camp env run xtuner -- xtuner train config.py --work-dir work_by_hand" in cmds[0].by_hand
        by_hand = subprocess.run(["bash", "-c", cmds[1].by_hand], capture_output=True, text=True, timeout=600,
                                 env=subprocess_env())
        assert by_hand.returncode == 0, by_hand.stderr[-2000:]
        made = run_dir / "adapter_by_hand" / "adapter_model.safetensors"
        assert made.read_bytes() == (Path(out["adapter_dir"]) / "adapter_model.safetensors").read_bytes()

        # a name that meanwhile belongs to another model is not taken over: the run gets a versioned name
        from camp.models import tiny

        models.register(name, tiny.ensure(), replace=True)
        third = _stage.finetune("tiny", sc, run_dir=run_dir, show=False)
        assert third.name == f"{name}-2" and models.resolve(third.name) == merged
        assert models.resolve(name) == tiny.default_dir()
    finally:
        models.unregister(name)
        models.unregister(f"{name}-2")


@pytest.mark.integration
def test_a_cancelled_run_resumes_from_its_checkpoint_and_finishes(xtuner_env, tmp_path):
    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition("阿土伯", "王小明"), sc)
    run_dir = tmp_path / "run"
    iters = 300  # checkpoints every 75 iterations
    proc = subprocess.Popen([sys.executable, "-m", "camp", "finetune", "tiny", str(sc), "--run-dir", str(run_dir),
                             "--max-iters", str(iters), "--name", f"pytest-resume-{uuid.uuid4().hex[:8]}"],
                            cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run_dir / "work" / "last_checkpoint"  # written once a checkpoint is complete
    deadline = time.time() + 180
    while not (last.exists() and "iter_75.pth" in last.read_text()) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), proc.communicate(timeout=60)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: camp cancels the training Job (its whole process group)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "to resume from the last checkpoint" in err
    assert not (run_dir / "work" / f"iter_{iters}.pth").exists()
    pid = json.loads((run_dir / "state.json").read_text())["train_pid"]
    assert pid is None
    stopped_at = _xtuner.parse_log((run_dir / "jobs" / "train" / "log.txt").read_text()).checkpoints[-1]
    assert stopped_at < iters

    result = _stage.finetune("tiny", sc, run_dir=run_dir, max_iters=iters, merge=False, show=False)
    assert result.resumed_from == [stopped_at]
    assert result.losses[-1][0] == iters and (run_dir / "work" / f"iter_{iters}.pth").is_file()
    log = (run_dir / "jobs" / "train" / "log.txt").read_text()
    assert f"resumed epoch: 0, iter: {stopped_at}" in log and f"[{iters}/{iters}]" in log
    assert result.adapter_dir and _stage.is_complete(result.adapter_dir) and result.merged_dir is None


def test_a_started_run_is_not_resumed_with_other_data_or_settings(tmp_path, monkeypatch):
    sc = tmp_path / "sc.jsonl"
    data.save(data.self_cognition("小测", "测试员"), sc)
    run_dir = tmp_path / "run"
    (run_dir / "work").mkdir(parents=True)
    (run_dir / "work" / "iter_25.pth").write_bytes(b"x")  # a started run …
    (run_dir / "config.py").write_text("# its config\n")
    (run_dir / "run.json").write_text(json.dumps({"max_iters": 100, "lr": 0.01, "plan": {}}))
    (run_dir / "data.jsonl").write_text("")  # … on other data
    monkeypatch.setattr("camp.runtime.stage.run_step", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(CampError, match="different dataset"):
        _stage.finetune("tiny", sc, run_dir=run_dir, show=False)
    same = "".join(json.dumps(data.to_xtuner(r), ensure_ascii=False) + "\n" for r in data.load(sc))
    (run_dir / "data.jsonl").write_text(same, encoding="utf-8")
    with pytest.raises(CampError, match="different max_iters"):
        _stage.finetune("tiny", sc, run_dir=run_dir, max_iters=50, show=False)
