"""Jobs: the real subprocess, its log, parsed progress, exit status AND outputs, cancel."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from camp.runtime.jobs import Job, JobFailed


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan reparented to a container's init may never be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_success_writes_log_and_job_json(tmp_path):
    job = Job(py("print('hello'); print('world')"), name="hello", run_dir=tmp_path / "run").run(show=False)
    assert job.status == "succeeded" and job.returncode == 0
    log = job.log_path.read_text()
    assert "hello" in log and "world" in log
    info = json.loads((tmp_path / "run" / "job.json").read_text())
    assert info["status"] == "succeeded" and info["returncode"] == 0


def test_nonzero_exit_fails_with_log_tail(tmp_path):
    job = Job(py("import sys; print('boom happened'); sys.exit(3)"), name="bad", run_dir=tmp_path)
    with pytest.raises(JobFailed) as err:
        job.run(show=False)
    assert job.status == "failed" and job.returncode == 3
    assert "exit status 3" in str(err.value) and "boom happened" in str(err.value)


def test_exit_zero_without_expected_output_is_a_failure(tmp_path):
    # XTuner and OpenCompass exit 0 when training/inference failed: outputs decide.
    job = Job(py("print('pretend all went well')"), name="liar", run_dir=tmp_path, expect=["model.safetensors"])
    with pytest.raises(JobFailed, match="model.safetensors"):
        job.run(show=False)
    assert job.status == "failed"


def test_expected_output_present_succeeds(tmp_path):
    job = Job(py("open('out.txt','w').write('x')"), name="writer", run_dir=tmp_path, expect=["out.txt"])
    assert job.run(show=False).status == "succeeded"


def test_custom_check(tmp_path):
    job = Job(py("print('loss: nan')"), name="nan", run_dir=tmp_path,
              expect=lambda j: "loss is nan" if any("nan" in x for x in j.tail()) else None)
    with pytest.raises(JobFailed, match="loss is nan"):
        job.run(show=False)


def test_progress_parsed_from_output_including_carriage_returns(tmp_path):
    code = "import sys\nfor i in range(1, 6):\n    sys.stdout.write(f'step {i}/5 loss {1/i:.3f}\\r')\nprint()"

    def parser(line, progress):
        m = re.search(r"step (\d+)/(\d+) loss ([\d.]+)", line)
        if m:
            progress.update(n=int(m.group(1)), total=int(m.group(2)), loss=float(m.group(3)))

    job = Job(py(code), name="steps", run_dir=tmp_path, parser=parser).run(show=False)
    assert job.progress.n == 5 and job.progress.total == 5
    assert job.progress.metrics["loss"] == pytest.approx(0.2)


def test_cancel_kills_the_whole_process_group(tmp_path):
    # the tool's own child must die too (servers, dataloader workers)
    code = ("import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('child', c.pid, flush=True)\n"
            "time.sleep(60)")
    job = Job(py(code), name="sleepy", run_dir=tmp_path).start()
    deadline = time.time() + 20
    while not any(x.startswith("child") for x in job.tail()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(next(x for x in job.tail() if x.startswith("child")).split()[1])
    job.cancel(grace=2)
    assert job.status == "cancelled"
    deadline = time.time() + 5
    while alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_missing_program_is_a_clear_error(tmp_path):
    from camp.runtime.errors import CampError

    with pytest.raises(CampError, match="cannot start"):
        Job(["no-such-tool-xyz"], name="ghost", run_dir=tmp_path).start()
