"""`result.commands()`: the tool command lines a stage ran, read from job.json, and the same step as the tool's own
CLI for a student to type in the tool's env."""

from __future__ import annotations

import json
import shlex

from camp.evaluation.result import EvalResult
from camp.runtime.jobs import Job
from camp.runtime.toolcmd import read_job
from camp.training.result import FinetuneResult


def _job_json(folder, cmd, env, cwd, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps({"name": "x", "cmd": cmd, "env": env, "cwd": str(cwd),
                                                 "extra_env": extra or {}, "status": "succeeded"}))


def test_a_job_records_what_running_it_by_hand_needs(tmp_path):
    job = Job(["python", "-c", "print(1)"], name="t", run_dir=tmp_path / "job", cwd=tmp_path,
              extra_env={"CAMP_SERVE_API_KEY": "secret", "FOO": "bar"})
    job.run(show=False)
    info = json.loads((tmp_path / "job" / "job.json").read_text())
    assert info["cwd"] == str(tmp_path)
    assert info["extra_env"] == {"CAMP_SERVE_API_KEY": "***", "FOO": "bar"}  # no secret in the run folder
    c = read_job(tmp_path / "job", "t")
    assert c.argv == ["python", "-c", "print(1)"] and c.status == "succeeded"


def test_finetune_commands_are_the_xtuner_cli(tmp_path):
    run = tmp_path / "run"
    py, train = "/envs/xtuner/bin/python", "/envs/xtuner/lib/python3.10/site-packages/xtuner/tools/train.py"
    _job_json(run / "jobs" / "train", [py, train, str(run / "config.py"), "--work-dir", str(run / "work"),
                                       "--resume", str(run / "work" / "iter_50.pth")], "xtuner", run,
              {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    _job_json(run / "jobs" / "convert", ["/envs/xtuner/bin/xtuner", "convert", "pth_to_hf", str(run / "config.py"),
                                         str(run / "work" / "iter_100.pth"), str(run / ".adapter.tmp-12-ab12cd"),
                                         "--fp32"], "xtuner", run)
    res = FinetuneResult(run_dir=run, config_path=run / "config.py", work_dir=run / "work", checkpoint=None,
                         adapter_dir=None, merged_dir=None, name=None, base="tiny", base_dir=tmp_path, plan=None,
                         max_iters=100)
    cmds = res.commands()
    assert [c.step for c in cmds] == ["train", "convert"]  # merge did not run
    train_cmd, convert_cmd = cmds
    assert train_cmd.ran.endswith(shlex.join([py, train, str(run / "config.py"), "--work-dir", str(run / "work"),
                                              "--resume", str(run / "work" / "iter_50.pth")]))
    assert train_cmd.by_hand == (f"cd {run} && TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 camp env run xtuner -- "
                                 "xtuner train config.py --work-dir work_by_hand")
    assert convert_cmd.by_hand == (f"cd {run} && camp env run xtuner -- xtuner convert pth_to_hf config.py "
                                   "work/iter_100.pth adapter_by_hand --fp32")
    assert "xtuner train config.py" in str(cmds) and "adapter_by_hand" in cmds._repr_html_()


def test_multi_gpu_training_by_hand_sets_nproc_per_node(tmp_path):
    run = tmp_path / "run"
    _job_json(run / "jobs" / "train", ["/py", "-m", "torch.distributed.run", "--nproc_per_node=2",
                                       "--master_port=23456", "/x/xtuner/tools/train.py", str(run / "config.py"),
                                       "--launcher", "pytorch", "--work-dir", str(run / "work")], "xtuner", run)
    res = FinetuneResult(run_dir=run, config_path=run / "config.py", work_dir=run / "work", checkpoint=None,
                         adapter_dir=None, merged_dir=None, name=None, base="m", base_dir=tmp_path, plan=None,
                         max_iters=1)
    (c,) = res.commands()
    assert c.by_hand == f"cd {run} && NPROC_PER_NODE=2 camp env run xtuner -- xtuner train config.py --work-dir work_by_hand"


def test_eval_commands_are_the_opencompass_cli(tmp_path):
    run = tmp_path / "eval"
    _job_json(run, ["/envs/oc/bin/python", "-m", "opencompass.cli.main", str(run / "config.py"), "-w",
                    str(run / "outputs"), "--debug"], "opencompass", run, {"PYTHONPATH": str(run)})
    res = EvalResult(table=None, run_dir=run, config_path=run / "config.py", summary_csv=None, predictions={})
    (c,) = res.commands()
    assert c.by_hand == f"cd {run} && PYTHONPATH={run} camp env run opencompass -- opencompass config.py -w outputs --debug"


def test_an_lmdeploy_endpoint_shows_the_api_server_command_to_run_in_the_lmdeploy_env(tmp_path):
    from camp.serving.endpoint import Endpoint

    class FakeJob:
        cmd = ["lmdeploy", "serve", "api_server", str(tmp_path / "m"), "--server-port", "23333",
               "--api-keys", "sk-1"]
        env, status = "lmdeploy", "running"
        extra_env = {"HF_HUB_OFFLINE": "1", "CAMP_SERVE_API_KEY": "sk-1"}

    ep = Endpoint("http://127.0.0.1:23333/v1", "m", engine="turbomind", job=FakeJob(), folder=tmp_path / "m")
    (c,) = ep.commands()
    assert c.by_hand == (f"HF_HUB_OFFLINE=1 CAMP_SERVE_API_KEY='***' camp env run lmdeploy -- lmdeploy serve "
                         f"api_server {tmp_path / 'm'} --server-port 23333 --api-keys '***'")
    assert "sk-1" not in c.ran and "sk-1" not in str(ep.commands())
