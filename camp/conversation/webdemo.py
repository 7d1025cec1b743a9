"""`camp webdemo`: the Streamlit chat app as a camp Job, bound to 127.0.0.1 by default.

    demo = camp.ui.webdemo.launch("tiny")      # returns once /_stcore/health answers
    demo.url; demo.stop()                        # or: with launch(...) as demo: ...
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.serving import ports

APP = Path(__file__).resolve().parents[1] / "ui" / "webdemo_app.py"
FIRST_PORT = 8501  # Streamlit's usual port, which course material tunnels
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SSH_HINT = "ssh -CNg -L {port}:127.0.0.1:{port} root@ssh.intern-ai.org.cn -p <your ssh port>"


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
        import html

        return (
            f'<b>camp webdemo</b> ({html.escape(self.job.status)}): <a href="{self.url}" target="_blank">{self.url}</a>'
            f"<pre>{html.escape(self.hint)}</pre>"
        )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def launch(
    model: str | os.PathLike = "auto",
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    system: str | None = None,
    timeout: float = 90.0,
) -> WebDemo:
    """Start the Streamlit chat app on `model` and return once it answers; raises CampError with the log
    tail if it does not come up within `timeout` s. The model is resolved (downloaded) here, before the
    server starts, so a bad name fails fast; the server loads it on the first page view."""
    from camp.conversation.session import _resolve_folder
    from camp.runtime.jobs import Job

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
    job = Job(cmd, name="webdemo", extra_env=env, kill_on_exit=True)
    job.start()
    demo = WebDemo(job, host, port, str(folder))
    deadline = time.monotonic() + timeout
    while True:
        if _healthy(demo.url):
            return demo
        if job.done:
            raise CampError(_failure("the web demo exited", job))
        if time.monotonic() > deadline:
            job.cancel(grace=3)
            raise CampError(_failure(f"the web demo did not answer within {timeout:.0f} s", job))
        time.sleep(0.2)


def _failure(what: str, job) -> str:
    tail = "\n".join("    " + line for line in job.tail(15))
    return f"{what} — see {job.log_path}\n  last lines:\n{tail}"


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
    print(t(f"日志：{demo.job.log_path} —— 按 Ctrl-C 停止 demo", f"log: {demo.job.log_path} — Ctrl-C stops the demo"),
          flush=True)
    try:
        while not demo.job.done:
            time.sleep(0.5)
    except KeyboardInterrupt:
        demo.stop()
        print(t("\ncamp webdemo：已停止", "\ncamp webdemo: stopped"))
        return 0
    print(_failure(f"the web demo stopped ({demo.job.status})", demo.job), file=sys.stderr)
    return 1
