"""`camp webdemo`: the Streamlit chat app as a camp Job, bound to 127.0.0.1 by default.

    demo = camp.webdemo("tiny")                  # returns once /_stcore/health answers
    demo.url; demo.stop()                        # or: with launch(...) as demo: ...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from camp.runtime import config, progress
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.jobs import new_run_dir
from camp.runtime.stage import StageError, Step, explain, run_step
from camp.serving import ports
from camp.serving.ports import LOCAL_HOSTS, SSH_HINT

APP = Path(__file__).resolve().parents[1] / "ui" / "webdemo_app.py"
FIRST_PORT = 8501  # Streamlit's usual port, which course material tunnels


def free_port(host: str = "127.0.0.1", start: int = FIRST_PORT, tries: int = 100) -> int:
    return ports.free_port(host, start, tries)


class WebDemo:
    """A running web demo: `.url`, `.port`, `.host`, `.job`; `.stop()`; a context manager."""

    def __init__(self, job, host: str, port: int, model: str):
        self.job, self.host, self.port, self.model = job, host, port, model

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def hint(self) -> str:
        """How to reach it from a laptop when the demo runs on a remote dev machine."""
        return t(
            f"如果 demo 跑在远程开发机上，请在你自己的电脑上转发端口：\n"
            f"    {SSH_HINT.format(port=self.port)}\n"
            f"然后打开 http://127.0.0.1:{self.port}",
            f"On a remote dev machine, forward the port from your own computer:\n"
            f"    {SSH_HINT.format(port=self.port)}\n"
            f"then open http://127.0.0.1:{self.port}",
        )

    def stop(self) -> None:
        self.job.cancel(grace=5)

    @property
    def running(self) -> bool:
        return not self.job.done

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        state = "running" if self.running else self.job.status
        return f"<WebDemo {self.url} {state} model={self.model} log={self.job.log_path}>"

    def _repr_html_(self):
        from camp.ui.html import webdemo_html

        return webdemo_html(self)


def launch(
    model: str | os.PathLike = "auto",
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    system: str | None = None,
    timeout: float = 90.0,
    show=True,
) -> WebDemo:
    """Start the Streamlit chat app on `model` and return once it answers; raises StageError (the cause and the log
    path) if it does not come up within `timeout` s. The model is resolved (downloaded) here, before the server
    starts, so a bad name fails fast; the server loads it on the first page view. The demo runs under the guard:
    it dies with the process that started it."""
    import httpx

    from camp.conversation.session import _resolve_folder
    from camp.serving.client import http_client

    folder = _resolve_folder(model)
    if port is None:
        port = free_port(host)
    elif not ports.port_free(host, port):
        raise CampError(f"port {port} on {host} is in use — pick another with --port, or leave it out")
    env = {
        "CAMP_WEBDEMO_MODEL": str(folder),
        "CAMP_WEBDEMO_SYSTEM": system or "",
        "PYTHONPATH": config.pythonpath(),  # the app imports this very camp package
    }
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",  # no reload-on-edit watcher: nothing to watch in a demo
    ]  # fmt: skip
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    http = http_client(url, timeout=5)

    def ready(job) -> bool:
        try:
            return http.get(url + "/_stcore/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    job = run_step(Step("webdemo", cmd, new_run_dir("webdemo"), extra_env=env, ready=ready, timeout=timeout,
                        desc="Streamlit"), progress.get(show))
    return WebDemo(job, host, port, str(folder))


def cli_webdemo(args) -> int:
    host = args.host or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        print(t(f"camp：警告：监听 {host} 会把 demo 开放到网络上——任何能访问这台机器的人都能使用模型。"
                "建议用 127.0.0.1 加 ssh 端口转发。",
                f"camp: warning: listening on {host}: the demo is then open to the network — anyone who can reach "
                "this machine can use the model. Use 127.0.0.1 and an ssh port forward instead."),
              file=sys.stderr)
    demo = launch(args.model or "auto", port=args.port, host=host, system=args.system)
    print(t(f"camp webdemo：{demo.url}  （模型 {demo.model}）", f"camp webdemo: {demo.url}  (model {demo.model})"))
    print(demo.hint)
    try:  # the line that says Ctrl-C is printed inside: a Ctrl-C right after it (while print returns) stops cleanly
        print(t(f"日志：{demo.job.log_path} —— 按 Ctrl-C 停止 demo", f"log: {demo.job.log_path} — Ctrl-C stops the demo"),
              flush=True)
        while not demo.job.done:
            time.sleep(0.5)
    except KeyboardInterrupt:
        demo.stop()
        print(t("\ncamp webdemo：已停止", "\ncamp webdemo: stopped"))
        return 0
    raise StageError("webdemo", f"the web demo stopped ({demo.job.status}): {explain(demo.job)}", demo.job)
