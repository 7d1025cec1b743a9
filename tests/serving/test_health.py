"""An endpoint camp stopped is not healthy, even when another server has taken its freed port (two notebooks, or two
test workers, both serve from the next free port from 23333)."""

from __future__ import annotations

import http.server
import threading

from camp.serving.endpoint import Endpoint


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200 if self.path.endswith("/health") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


class _Job:
    def __init__(self, done: bool):
        self.done = done


def test_a_stopped_endpoint_is_not_healthy_when_another_server_took_its_port():
    other = http.server.HTTPServer(("127.0.0.1", 0), _Health)  # someone else's server on "our" port
    threading.Thread(target=other.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{other.server_port}/v1"
    try:
        assert Endpoint(url, "m", engine="transformers", job=_Job(done=False)).healthy()
        assert not Endpoint(url, "m", engine="transformers", job=_Job(done=True)).healthy()
        assert Endpoint(url, "m").healthy(), "a server camp did not start is judged by its answer alone"
    finally:
        other.shutdown()
        other.server_close()


def test_a_port_another_process_is_starting_a_server_on_is_skipped(tmp_path, monkeypatch):
    import subprocess
    import sys

    from camp.serving import ports

    monkeypatch.setenv("CAMP_HOME", str(tmp_path / "home"))
    first = ports.free_port(start=24700)
    assert ports.free_port(start=24700) == first, "this process starts its servers one at a time: same port"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # another live camp process chose `first` a moment ago and has not bound it yet
        (tmp_path / "home" / "ports" / f"{first}.claim").write_text(f"{other.pid} {__import__('time').time()}")
        assert ports.free_port(start=24700) == first + 1
    finally:
        other.kill()
        other.wait()
    assert ports.free_port(start=24700) == first, "a claim of a process that has ended counts for nothing"
