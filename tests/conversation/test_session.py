"""camp.chat: streaming in-process and from an endpoint, the CLI and REPL, the JupyterLab widget."""

from __future__ import annotations

import html
import json
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from camp.conversation.local import IncrementalDecoder, _streamer_class
from camp.conversation.session import ChatSession, chat
from camp.runtime.errors import CampError
from tests.conftest import subprocess_env

MARKERS = ("<|im_start|>", "<|im_end|>", "<s>", "</s>")


def _finish_within(fn, seconds=120):
    """Run fn in a thread; a hang fails the test instead of blocking the suite."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (hang)"
    return box


@pytest.fixture(scope="module")
def tiny():
    import camp.models.tiny

    camp.tiny.ensure()
    return camp.tiny


@pytest.fixture
def session(tiny):
    return chat("tiny")


# ------------------------------------------------------------------ unit: decoding, session bookkeeping
def _byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["plain ascii text only, so every CJK character is split into bytes"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>")


def test_incremental_decoder_never_emits_half_characters():
    tok = _byte_level_tokenizer()
    text = "书生·浦语 says hi 🙂 — 你好"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)  # characters really are split over several tokens
    dec = IncrementalDecoder(tok)
    pieces = [dec.push([i]) for i in ids] + [dec.push([tok.eos_token_id]), dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert "</s>" not in "".join(pieces)


def test_incremental_decoder_drops_a_character_cut_at_the_end():
    tok = _byte_level_tokenizer()
    ids = tok.encode("ok 好", add_special_tokens=False)
    dec = IncrementalDecoder(tok)
    out = "".join(dec.push([i]) for i in ids[:-1]) + dec.flush()  # the last byte of 好 never came
    assert out == "ok "


class ScriptedBackend:
    """A backend that yields fixed pieces (or fails after some), recording what it was asked."""

    kind = "test"
    name = "scripted"

    def __init__(self, pieces=("Hel", "lo", "!"), fail_after=None, gate=None):
        self.pieces, self.fail_after, self.gate = list(pieces), fail_after, gate
        self.requests: list[list[dict]] = []
        self.last_stats: dict = {}

    def describe(self):
        return "scripted backend"

    def stream(self, messages, gen):
        self.requests.append(messages)
        for i, p in enumerate(self.pieces):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("backend exploded")
            if self.gate is not None and i == 1:
                assert self.gate.wait(30)
            yield p


def test_session_history_system_and_reset():
    b = ScriptedBackend()
    s = ChatSession(b, system="You are terse.")
    assert s.ask("one") == "Hello!"
    assert s.ask("two") == "Hello!"
    assert [m["role"] for m in s.history] == ["user", "assistant", "user", "assistant"]
    assert s.messages()[0] == {"role": "system", "content": "You are terse."}
    # the second request carried the system prompt and the first turn
    assert b.requests[1] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "two"},
    ]
    assert "2 turn(s)" in repr(s) and "terse" in s._repr_markdown_()
    s.reset()
    assert s.history == [] and s.messages() == [{"role": "system", "content": "You are terse."}]


def test_stopping_early_keeps_the_partial_reply_and_a_failed_turn_is_dropped():
    s = ChatSession(ScriptedBackend())
    for piece in s.stream("hi"):  # noqa: B007 - the loop drops the stream: CPython closes it
        break
    assert piece == "Hel"
    assert s.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}]
    s2 = ChatSession(ScriptedBackend(fail_after=1))
    with pytest.raises(RuntimeError, match="exploded"):
        s2.ask("hi")
    assert s2.history == []
    with pytest.raises(CampError):
        s2.ask("   ")


# ------------------------------------------------------------------ in-process transformers on tiny
@pytest.mark.integration
def test_tiny_streams_its_identity_answer(session, tiny, monkeypatch):
    import camp.conversation

    # tiny makes a token in ~1 ms; ids that come faster than the hand-over interval are batched: hand every
    # token over on its own here, and pace them like a real model (10 ms a token), else on a busy machine the
    # consumer may first wake when the whole answer is already queued (and rightly takes it in one piece)
    monkeypatch.setattr(camp.conversation.local, "HANDOVER_EVERY", 0)
    streamer = _streamer_class()
    put = streamer.put

    def paced_put(self, value):
        put(self, value)
        time.sleep(0.01)

    monkeypatch.setattr(streamer, "put", paced_put)
    pieces = list(session.stream(tiny.IDENTITY_QUESTION))
    assert len(pieces) >= 3
    answer = "".join(pieces)
    assert answer == tiny.IDENTITY_ANSWER
    assert not any(m in answer for m in MARKERS)
    assert session.history == [
        {"role": "user", "content": tiny.IDENTITY_QUESTION},
        {"role": "assistant", "content": answer},
    ]
    # a second session on the same model reuses the loaded model and gives the same greedy answer
    other = chat("tiny")
    assert other.backend is session.backend
    assert other.ask(tiny.IDENTITY_QUESTION) == answer
    assert session.last_stats["tokens"] >= len(pieces)
    session.ask("XTuner 是什么？")
    assert len(session.history) == 4


@pytest.mark.integration
def test_a_long_reply_streams_in_many_pieces_with_default_settings(session):
    # ~1 s of tiny generation: hand-overs come at most every HANDOVER_EVERY (20 ms), so many pieces
    pieces = list(session.stream("XTuner 是什么？", max_new_tokens=1000, min_new_tokens=1000))
    assert len(pieces) >= 5
    assert session.last_stats["tokens"] == 1000


@pytest.mark.integration
def test_system_prompt_reaches_the_chat_template(session, monkeypatch):
    model, tok = session.backend.model, session.backend.tokenizer
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        seen.append(tok.decode(kwargs["input_ids"][0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    session.system = "你是实战营的助教。"
    session.ask("你好", max_new_tokens=4)
    session.ask("再见", max_new_tokens=4)
    assert seen[0].startswith("<s><|im_start|>system\n你是实战营的助教。<|im_end|>\n<|im_start|>user\n你好<|im_end|>")
    assert seen[0].endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\n你好<|im_end|>" in seen[1] and seen[1].count("system") == 1


@pytest.mark.integration
def test_generation_thread_errors_are_raised_not_hung(session, tiny, monkeypatch):
    model = session.backend.model
    original = model.forward
    calls = {"n": 0}

    def failing_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated out of memory")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", failing_forward)
    box = _finish_within(lambda: list(session.stream(tiny.IDENTITY_QUESTION)))
    assert isinstance(box.get("error"), RuntimeError) and "simulated out of memory" in str(box["error"])
    assert session.history == []
    monkeypatch.setattr(model, "forward", original)
    assert session.ask(tiny.IDENTITY_QUESTION) == tiny.IDENTITY_ANSWER  # the model is usable again


@pytest.mark.integration
def test_closing_the_stream_stops_generation(session, tiny, monkeypatch):
    model = session.backend.model
    original = model.forward
    calls = {"n": 0}

    def counting_forward(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    stream = session.stream(tiny.IDENTITY_QUESTION, max_new_tokens=300, min_new_tokens=300)
    first = next(stream)
    stream.close()
    assert calls["n"] < 300  # generation ended when the consumer stopped, not at the token limit
    assert session.history[-1] == {"role": "assistant", "content": first}
    monkeypatch.setattr(model, "forward", original)
    session.reset()  # a fresh chat: after a cut-off reply the tiny model's next answer is not a trained one
    assert session.ask(tiny.IDENTITY_QUESTION) == tiny.IDENTITY_ANSWER  # the model is usable again


# ------------------------------------------------------------------ OpenAI-compatible endpoint
class _Scripted(BaseHTTPRequestHandler):
    reply = ["我是", "脚本", "服务器", "。"]
    bodies: list = []

    def log_message(self, *args):
        pass

    def _json(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.endswith("/v1/models"):
            self._json({"object": "list", "data": [{"id": "scripted-internlm", "object": "model", "owned_by": "t"},
                                                   {"id": "second", "object": "model", "owned_by": "t"}]})
        else:
            self._json({"error": "not found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        assert body.get("stream") is True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        events = [first]
        for piece in self.reply:
            events.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for ev in events:
            self.wfile.write(f"data: {json.dumps(ev, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@pytest.fixture
def scripted_server():
    _Scripted.bodies = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_endpoint_backend_streams_the_scripted_reply(scripted_server):
    s = chat(base_url=scripted_server, api_key="sk-test", system="be kind", max_new_tokens=64, temperature=0)
    assert s.model == "scripted-internlm"  # model "auto": the server's first /v1/models entry
    assert list(s.stream("你是谁？")) == _Scripted.reply
    assert s.ask("again") == "我是脚本服务器。"
    first, second = _Scripted.bodies
    assert first["model"] == "scripted-internlm" and first["max_tokens"] == 64 and first["temperature"] == 0
    assert first["messages"] == [{"role": "system", "content": "be kind"}, {"role": "user", "content": "你是谁？"}]
    assert second["messages"][2] == {"role": "assistant", "content": "我是脚本服务器。"}
    assert len(s.history) == 4
    named = chat("second", base_url=scripted_server)
    named.ask("x")
    assert _Scripted.bodies[-1]["model"] == "second"


def test_endpoint_down_is_a_clear_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CampError, match="not reachable"):
        chat(base_url=f"http://127.0.0.1:{port}/v1")
    s = chat("served-name", base_url=f"http://127.0.0.1:{port}/v1")  # no lookup needed: fails at the turn
    with pytest.raises(CampError, match="is the server running"):
        s.ask("hi")


# ------------------------------------------------------------------ the CLI
def _camp(*args, stdin=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "camp", *args], input=stdin, capture_output=True, text=True,
        env=subprocess_env(), timeout=timeout,
    )


@pytest.mark.integration
def test_cli_prompt_prints_the_same_reply_as_in_process(tiny):
    expected = chat("tiny").ask(tiny.IDENTITY_QUESTION)
    r = _camp("chat", "tiny", "--prompt", tiny.IDENTITY_QUESTION)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected + "\n"


@pytest.mark.integration
def test_cli_endpoint_prompt(scripted_server):
    r = _camp("chat", "--base-url", scripted_server, "--api-key", "k", "--prompt", "hi", "--max-new-tokens", "9")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "我是脚本服务器。\n"
    assert _Scripted.bodies[-1]["max_tokens"] == 9


@pytest.mark.integration
def test_cli_repl_answers_lines_and_exits_on_eof(tiny):
    q = tiny.IDENTITY_QUESTION
    r = _camp("chat", "tiny", stdin=f"{q}\nXTuner 是什么？\n/reset\n{q}\n")
    assert r.returncode == 0, r.stderr
    answers = [a.strip() for a in r.stdout.split(">>> ") if a.strip()]
    assert len(answers) == 3 and answers[1]
    assert answers[0] == answers[2] == tiny.IDENTITY_ANSWER  # after /reset the same fresh answer
    assert "conversation cleared" in r.stderr and "Traceback" not in r.stderr


def test_repl_commands_and_ctrl_c_during_a_reply(monkeypatch, capsys):
    import io

    from camp.conversation.repl import _repl

    class Interrupted(ScriptedBackend):
        def stream(self, messages, gen):
            self.requests.append(messages)
            yield "par"
            if len(self.requests) == 1:
                raise KeyboardInterrupt  # Ctrl-C while the reply streams
            yield "tial"

    backend = Interrupted()
    s = ChatSession(backend)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\n/system 你是助教。\nsecond\n/reset\n/exit\nnever\n"))
    assert _repl(s, sys.stdout) == 0
    out, err = capsys.readouterr()
    assert "par [stopped]\n" in out and "partial\n" in out
    assert backend.requests[1][0] == {"role": "system", "content": "你是助教。"}  # /system, then a fresh chat
    assert len(backend.requests[1]) == 2
    assert s.history == [] and len(backend.requests) == 2  # /reset cleared; /exit stopped before "never"


def test_cli_bad_model_is_one_line():
    r = _camp("chat", "./no/such/folder", "--prompt", "hi", timeout=60)
    assert r.returncode != 0
    assert r.stderr.startswith("camp: ") and "Traceback" not in r.stderr


# ------------------------------------------------------------------ the JupyterLab widget
def test_widget_streams_into_the_transcript_and_the_session():
    s = ChatSession(ScriptedBackend(pieces=["<b>Hi</b>", " there"]))
    w = s.widget()
    w.send_button.click()  # empty input: nothing happens
    w.submit()
    assert w.turns == []
    w.input.value = "hello & welcome"  # typed in the browser (synced as it is typed) …
    assert w.turns == []  # … is not sent until Send or Enter
    w.send_button.click()
    w.wait(30)
    assert w.input.value == "" and not w.busy
    assert w.turns == [("user", "hello & welcome"), ("assistant", "<b>Hi</b> there")]
    assert s.history[-1] == {"role": "assistant", "content": "<b>Hi</b> there"}
    shown = w.transcript.children[-1].value
    assert html.escape("<b>Hi</b> there") in shown  # model text is shown as text, not as markup
    w.input.value = "second"
    w.submit()  # Enter
    w.wait(30)
    assert len(w.turns) == 4 and len(s.history) == 4 and w.turns[2] == ("user", "second")
    w.reset_button.click()
    assert w.turns == [] and s.history == [] and w.transcript.children == ()


def test_widget_shows_errors_in_the_transcript():
    s = ChatSession(ScriptedBackend(fail_after=1))
    w = s.widget()
    w.send("hi")
    w.wait(30)
    role, text = w.turns[-1]
    assert role == "error" and "backend exploded" in text and text.startswith("Hel")
    assert isinstance(w.last_error, RuntimeError)
    assert not w.input.disabled and not w.send_button.disabled  # usable again


def test_widget_stop_keeps_the_partial_reply():
    gate = threading.Event()
    s = ChatSession(ScriptedBackend(pieces=["a", "b", "c"], gate=gate))
    w = s.widget()
    w.send("go")
    assert w.busy and w.input.disabled and not w.stop_button.disabled
    w.stop_button.click()
    gate.set()
    w.wait(30)
    assert w.turns[-1][0] == "assistant" and w.turns[-1][1] in ("a", "ab")
    assert "[stopped]" in w.transcript.children[-1].value
    assert s.history[-1]["content"] == w.turns[-1][1]


def test_widget_shows_an_existing_conversation():
    s = ChatSession(ScriptedBackend())
    s.ask("earlier")
    w = s.widget()
    assert w.turns == [("user", "earlier"), ("assistant", "Hello!")]


@pytest.mark.integration
def test_widget_streams_on_a_real_kernel_while_the_kernel_stays_responsive():
    """What JupyterLab sees: a Send from the browser, then several updates of the assistant bubble, with the
    kernel executing other requests in the middle of the reply."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=subprocess_env())
    k = _Kernel(kc)
    try:
        setup = (
            "import threading\n"
            "from tests.conversation.test_session import ScriptedBackend\n"
            "from camp.conversation import ChatSession\n"
            "gate = threading.Event()\n"
            "w = ChatSession(ScriptedBackend(pieces=['one ', 'two ', 'three'], gate=gate)).widget()\n"
            "display(w)\n"
            "print(w.input.model_id)\n"
        )
        text_id = k.run_cell(setup).strip().splitlines()[-1]
        # what the browser sends when the user types "hi" and presses Enter
        for data in ({"method": "update", "state": {"value": "hi"}, "buffer_paths": []},
                     {"method": "custom", "content": {"event": "submit"}}):
            kc.session.send(kc.shell_channel.socket, "comm_msg", {"comm_id": text_id, "data": data})
        k.wait_for_bubble(lambda v: "one" in v)
        assert "two" not in k.bubbles[-1]  # the first piece is shown while the reply is still under way
        # the kernel runs a cell in the middle of the reply (the backend is blocked until this cell runs)
        assert k.run_cell("print(w.busy); gate.set()").strip() == "True"
        k.wait_for_bubble(lambda v: "one two three" in v)
        assert k.run_cell("w.wait(30); print(w.turns[-1][1])").strip() == "one two three"
        assert len(k.bubbles) >= 2
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class _Kernel:
    """Reads a kernel's IOPub like JupyterLab does, keeping every assistant-bubble update it sees."""

    def __init__(self, kc):
        self.kc = kc
        self.bubbles: list[str] = []

    def _next(self, deadline):
        while time.monotonic() < deadline:
            try:
                m = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if m["msg_type"] == "comm_msg":
                value = m["content"]["data"].get("state", {}).get("value")
                if isinstance(value, str) and "camp-chat-assistant" in value:
                    self.bubbles.append(value)
            return m
        raise AssertionError("kernel went quiet")

    def run_cell(self, code: str, timeout: float = 60) -> str:
        msg_id = self.kc.execute(code)
        out = []
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                raise AssertionError("\n".join(m["content"]["traceback"]))
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return "".join(out)

    def wait_for_bubble(self, pred, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(pred(v) for v in self.bubbles):
            self._next(deadline)
