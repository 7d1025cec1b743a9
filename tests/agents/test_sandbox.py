"""The agent's code sandbox: each dangerous thing is refused or stopped with a clear reason; the caller survives."""

from __future__ import annotations

import os
import shutil
import socket
import threading

import pytest

from camp.agents import sandbox


@pytest.fixture(autouse=True)
def _needs_bubblewrap():
    # Not a skip: without bwrap the isolation is not there, and CI installs it.
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed — " + sandbox.INSTALL_HINT)
    assert sandbox.backend() == "bubblewrap"
    yield
    assert os.getpid() > 0  # the test process is still here and running


def test_normal_code_prints_and_uses_its_own_folder():
    code = (
        "open('notes.txt', 'w').write('saved')\n"
        "print(open('notes.txt').read(), open('data.csv').read().strip(), 2 + 3)\n"
        "import helper; print(helper.VALUE)\n"
    )
    r = sandbox.run_python(code, files={"data.csv": "a,b\n", "helper.py": "VALUE = 'imported'\n"})
    assert r.ok and r.returncode == 0 and r.reason is None, r
    assert r.stdout.split() == ["saved", "a,b", "5", "imported"]
    assert "saved a,b 5" in r.observation()


def test_ordinary_error_comes_back_as_traceback_without_a_sandbox_reason():
    r = sandbox.run_python("print('before')\n1/0\n")
    assert not r.ok and r.returncode == 1 and r.reason is None
    obs = r.observation()
    assert "before" in obs and "ZeroDivisionError" in obs


def test_infinite_loop_is_stopped_by_the_wall_clock():
    r = sandbox.run_python("while True:\n    pass\n", timeout=2)
    assert not r.ok and r.returncode is None
    assert r.reason.startswith("stopped: ran longer than 2 s (wall-clock limit)")
    assert "wall-clock" in r.observation()


def test_background_child_does_not_outlive_the_call(tmp_path):
    # The parent exits at once; its child keeps running: it must be killed with the sandbox, not left behind.
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n    print('child survived')\nprint('parent done')\n"
    r = sandbox.run_python(code, timeout=5)
    assert r.ok and "parent done" in r.stdout and "child survived" not in r.stdout


def test_fork_loop_is_refused():
    r = sandbox.run_python("import os\nwhile True:\n    os.fork()\n", timeout=10, max_procs=32)
    assert not r.ok
    assert "too many processes" in r.reason and "limit 32" in r.reason, r.reason


def test_huge_allocation_gets_memory_error():
    r = sandbox.run_python("x = bytearray(10 * 1024**3)\nprint('allocated')\n", memory_mb=512)
    assert not r.ok and "allocated" not in r.stdout
    assert r.reason == "stopped: memory limit of 512 MiB reached (MemoryError)", r.reason


def test_reading_a_file_outside_its_folder_fails(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    home_secret = os.path.expanduser("~/camp-sandbox-test-secret.txt")
    with open(home_secret, "w") as f:
        f.write("HOME SECRET")
    try:
        for path in (str(secret), home_secret, os.path.abspath(sandbox.__file__)):
            r = sandbox.run_python(f"print(open({path!r}).read())")
            assert not r.ok and "SECRET" not in r.stdout and "sandbox" not in r.stdout
            assert (
                r.reason
                == f"cannot read {path}: outside the sandbox (the code sees only /sandbox, a private /tmp and system files)"
            )
    finally:
        os.remove(home_secret)


def test_writing_outside_its_folder_fails(tmp_path):
    targets = [str(tmp_path / "written.txt"), "/usr/camp-sandbox-test.txt", os.path.abspath(sandbox.__file__)]
    for path in targets:
        r = sandbox.run_python(f"open({path!r}, 'w').write('pwned')")
        assert not r.ok and r.reason and r.reason.startswith(("cannot write", "cannot read", "permission denied")), (
            path,
            r.reason,
        )
        assert path in r.reason
    assert not (tmp_path / "written.txt").exists()
    assert not os.path.exists("/usr/camp-sandbox-test.txt")
    assert "pwned" not in open(sandbox.__file__).read()


def test_socket_to_a_host_listener_fails():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    server.settimeout(5)

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        r = sandbox.run_python(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')\n"
        )
    finally:
        server.close()
        t.join()
    assert not r.ok and "connected" not in r.stdout and not accepted
    assert r.reason.startswith("no network in the sandbox"), r.reason


def test_observation_is_truncated_to_a_sane_length():
    r = sandbox.run_python("print('x' * 100000)")
    assert r.ok and len(r.stdout) > 100000
    assert len(r.observation()) < 5000


def test_bad_file_name_is_a_user_error():
    from camp.runtime.errors import CampError

    with pytest.raises(CampError, match="relative path"):
        sandbox.run_python("pass", files={"../escape.txt": "x"})


def test_command_binds_only_what_it_is_given(tmp_path):
    """sandbox.command: a whole command (here a Python one-liner) with a read-only input, a writable folder, a
    capped scratch folder as /sandbox; the rest of the host's files stay invisible."""
    import subprocess
    import sys

    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "secret.txt").write_text("SECRET")
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os\n"
        "print(open('/sandbox/in/data.csv').read().strip())\n"
        f"open({str(out / 'ok.txt')!r}, 'w').write('written')\n"
        f"for p in [{str(tmp_path / 'secret.txt')!r}, {str(tmp_path / 'data.csv')!r}]:\n"
        "    print('visible' if os.path.exists(p) else 'hidden')\n"
        "try:\n"
        "    open('/sandbox/in/data.csv', 'w')\n"
        "except OSError as exc:\n"
        "    print('read-only', exc.errno)\n"
        "try:\n"
        "    with open('/sandbox/big', 'wb') as f:\n"
        "        [f.write(b'x' * (1 << 20)) for _ in range(64)]\n"
        "except OSError as exc:\n"
        "    print('full', exc.errno)\n"
    )
    argv = sandbox.command([sys.executable, "-c", code], read_only={str(tmp_path / "data.csv"): "/sandbox/in/data.csv"},
                           writable=[str(out)], scratch_mb=16, timeout=30)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:5] == ["a,b", "hidden", "hidden", "read-only 30", "full 28"], r.stdout
    assert (out / "ok.txt").read_text() == "written"
