"""A JupyterLab chat over a ChatSession: transcript, input (Enter sends), 发送 / 停止 / 清空 (Send / Stop / Clear
with CAMP_LANG=en).

The reply is generated in a worker thread and the assistant bubble is updated as pieces arrive. A click handler
that generated synchronously would also stream (ipykernel sends widget updates while the handler runs), but
it would hold the kernel for the whole reply: Stop and Reset clicks, and any other cell, would wait behind it.
ipykernel publishes widget state changes made from any thread through its IOPub thread, so the updates
reach JupyterLab as they are made (tests/test_chat.py checks this on a real kernel).
"""

from __future__ import annotations

import html
import threading
import time

from camp.runtime.i18n import t

_STYLE = {
    "user": "margin:4px 0 4px 20%;padding:6px 10px;border-radius:10px;background:#dbeafe;white-space:pre-wrap;",
    "assistant": "margin:4px 20% 4px 0;padding:6px 10px;border-radius:10px;background:#f1f5f9;white-space:pre-wrap;",
    "error": "margin:4px 20% 4px 0;padding:6px 10px;border-radius:10px;background:#fee2e2;color:#991b1b;"
    "white-space:pre-wrap;",
}
_UPDATE_EVERY = 0.05  # s between bubble updates: fast models produce tokens quicker than a browser redraws


def _bubble_html(role: str, text: str, note: str = "", images=()) -> str:
    style = _STYLE.get(role, _STYLE["assistant"])
    body = html.escape(text) if text else "<i>…</i>"
    extra = f' <span style="color:#64748b;font-size:85%">{html.escape(note)}</span>' if note else ""
    pics = "".join(f'<img src="{uri}" style="width:96px;image-rendering:pixelated;display:block;margin-bottom:4px">'
                   for uri in images)  # small pictures shown enlarged, pixel for pixel
    return f'<div class="camp-chat-{role}" style="{style}">{pics}{body}{extra}</div>'


class ChatWidget:
    """`ChatWidget(session)` (or `session.widget()`); display it as the last expression of a cell.

    Programmatic use (tests, papermill): `w.send("hi"); w.wait()`; `w.turns` lists (role, text) as shown.
    `w.submit()` does what pressing Enter in the box does.
    """

    def __init__(self, session, *, height: str | None = None):
        import ipywidgets as w

        self.session = session
        self.last_error: BaseException | None = None
        self._bubbles: list[tuple[str, object, str]] = []  # (role, HTML widget, text)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

        self.title = w.HTML(f"<b>{t('camp 对话', 'camp chat')}</b> — {html.escape(session.backend.describe())}")
        # grows with the conversation unless a height is given (then it scrolls)
        box = {"max_height": height, "overflow_y": "auto"} if height else {}
        self.transcript = w.VBox(layout=w.Layout(border="1px solid #cbd5e1", padding="6px", **box))
        self.input = w.Text(placeholder=t("输入消息，按回车发送", "Type a message and press Enter"), layout=w.Layout(flex="1"))
        self.send_button = w.Button(description=t("发送", "Send"), button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description=t("停止", "Stop"), icon="stop", disabled=True)
        self.reset_button = w.Button(description=t("清空", "Clear"), icon="trash")
        self.status = w.HTML("")
        # pictures for vision-language models: the next message carries the uploaded one (camp.multimodal)
        self.pending_image = None
        self.image_upload = w.FileUpload(accept="image/*", multiple=False, description=t("图片", "Image"),
                                         icon="image")
        self.image_upload.observe(self._on_upload, names="value")
        # Enter: the browser sends a "submit" message (what the deprecated Text.on_submit listened to). The
        # suggested replacement, continuous_update=False + observe("value"), also fires when the box merely
        # loses focus, which would send half-typed messages.
        self.input.on_msg(self._on_input_msg)
        self.send_button.on_click(lambda _b: self.send())
        self.stop_button.on_click(lambda _b: self.stop())
        self.reset_button.on_click(lambda _b: self.reset())
        self.box = w.VBox(
            [
                self.title,
                self.transcript,
                w.HBox([self.input, self.send_button, self.stop_button, self.reset_button]
                       + ([self.image_upload] if getattr(session.backend, "vision", True) else [])),
                self.status,
            ]
        )
        for m in session.history:  # a session that already talked shows its conversation
            self._add(m["role"], *_text_and_pictures(m["content"]))

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return f"<ChatWidget {self.session.backend.describe()}, {len(self._bubbles)} bubble(s)>"

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def turns(self) -> list[tuple[str, str]]:
        """What the transcript shows: (role, text) per bubble; role is user, assistant or error."""
        return [(role, text) for role, _w, text in self._bubbles]

    def _add(self, role: str, text: str, images=()):
        import ipywidgets as w

        bubble = w.HTML(_bubble_html(role, text, images=images))
        self._bubbles.append((role, bubble, text))
        self.transcript.children = (*self.transcript.children, bubble)
        return len(self._bubbles) - 1

    def _set(self, index: int, role: str, text: str, note: str = ""):
        _old_role, bubble, _ = self._bubbles[index]
        bubble.value = _bubble_html(role, text, note)
        self._bubbles[index] = (role, bubble, text)

    def _set_busy(self, busy: bool):
        self.input.disabled = busy
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy

    # ------------------------------------------------------------------ handlers
    def _on_input_msg(self, _widget, content, _buffers):
        if isinstance(content, dict) and content.get("event") == "submit":
            self.send()

    def _on_upload(self, change):
        files = change["new"] or ()
        if files:
            f = files[0]
            self.attach(bytes(f["content"]), name=f.get("name", ""))

    def attach(self, image, name: str = "") -> None:
        """The picture the next message carries (what the upload button does): a path, bytes, PIL image, array."""
        from camp.multimodal import images

        try:
            self.pending_image = images.load(image)
        except Exception as exc:  # a bad upload is said in the status line; nothing is sent
            self.pending_image = None
            self.status.value = f"<span style='color:#991b1b'>{html.escape(str(exc))}</span>"
            return
        self.status.value = f"🖼 {html.escape(name or 'image')} {self.pending_image.size[0]}×{self.pending_image.size[1]}"

    def send(self, text: str | None = None, image=None) -> None:
        """Send `text` (default: the input box) with `image` (default: the uploaded one); the reply streams into
        the transcript from a worker thread."""
        text = (self.input.value if text is None else text).strip()
        if not text or self.busy:
            return
        if image is not None:
            self.attach(image)
        image, self.pending_image = self.pending_image, None
        self.input.value = ""
        from camp.multimodal.images import to_data_uri

        self._add("user", text, [to_data_uri(image)] if image is not None else ())
        index = self._add("assistant", "")
        self._stop.clear()
        self.last_error = None
        self.status.value = f"<i>{t('正在生成…', 'generating…')}</i>"
        self._set_busy(True)
        self._thread = threading.Thread(target=self._generate, args=(text, index, image), daemon=True,
                                        name="camp-chat")
        self._thread.start()

    def _generate(self, text: str, index: int, image=None):
        parts: list[str] = []
        stopped = False
        try:
            stream = self.session.stream(text, image)
            last = 0.0
            try:
                for piece in stream:
                    parts.append(piece)
                    if self._stop.is_set():
                        stopped = True
                        break
                    now = time.monotonic()
                    if now - last >= _UPDATE_EVERY:
                        self._set(index, "assistant", "".join(parts))
                        last = now
            finally:
                stream.close()  # stops generation early on Stop; the partial reply stays in the history
            self._set(index, "assistant", "".join(parts), t("[已停止]", "[stopped]") if stopped else "")
            stats = self.session.last_stats
            if stats.get("tokens"):
                self.status.value = t(
                    f"{stats['tokens']} 个 token，用时 {stats['seconds']:.1f} 秒（每秒 {stats['tokens_per_s']:.1f} 个）",
                    f"{stats['tokens']} tokens in {stats['seconds']:.1f} s ({stats['tokens_per_s']:.1f} tokens/s)",
                )
            else:
                self.status.value = t(f"用时 {stats.get('seconds', 0):.1f} 秒", f"answered in {stats.get('seconds', 0):.1f} s")
        except Exception as exc:  # shown in the transcript: a worker thread's exception would otherwise be lost
            self.last_error = exc
            shown = "".join(parts)
            self._set(index, "error", (shown + "\n\n" if shown else "") + f"{t('出错', 'error')}: {type(exc).__name__}: {exc}")
            self.status.value = ""
        finally:
            self._set_busy(False)

    def submit(self) -> None:
        """Send what is in the input box, as Enter does (the same path as the browser's message)."""
        self.input._handle_custom_msg({"event": "submit"}, [])

    def wait(self, timeout: float | None = None) -> ChatWidget:
        """Block until the current reply is complete (for scripts and tests; not needed in JupyterLab)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()

    def reset(self) -> None:
        """Stop any reply, clear the transcript and the session's history."""
        if self.busy:
            self.stop()
            self.wait(30)
        self.session.reset()
        self._bubbles.clear()
        self.transcript.children = ()
        self.status.value = ""


def _text_and_pictures(content) -> tuple[str, list[str]]:
    """A history message as the transcript shows it: its text and its pictures as data URIs."""
    if isinstance(content, str):
        return content, []
    from camp.multimodal.images import to_data_uri

    text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return text, [to_data_uri(p["image"]) for p in content if p.get("type") == "image"]
