"""Chat: one session (history, system prompt, generation settings, token streaming) over two backends.

    s = camp.chat("tiny")                      # in-process transformers model (catalogue name or local folder)
    s = camp.chat("internlm2_5-1_8b-chat", base_url="http://127.0.0.1:23333/v1")   # OpenAI-compatible endpoint
    for piece in s.stream("你好"): print(piece, end="")
    s.ask("who are you?"); s.history; s.reset(); s.widget()

The three faces (the JupyterLab widget, `camp chat`, `camp webdemo`) are views over a ChatSession.
torch / transformers / openai are imported on first use: importing this module stays cheap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from camp.conversation.local import _resolve_folder, load_local
from camp.runtime.errors import CampError

# The settings a user is expected to change (None: the model's own default). Anything else given to
# chat()/stream() goes to `model.generate` (in-process) or into the request body (endpoint).
DEFAULT_GEN = {"max_new_tokens": 256, "temperature": None, "top_p": None, "do_sample": None,
               "repetition_penalty": None}



# ===================================================================== endpoint backend
class EndpointBackend:
    """An OpenAI-compatible server (LMDeploy api_server, `transformers serve`, …) through camp's endpoint client."""

    kind = "endpoint"

    def __init__(self, base_url: str, api_key: str | None, model: str | None):
        from camp.serving.client import Client

        key = api_key or os.environ.get("OPENAI_API_KEY") or None  # local servers accept any key
        self.client = Client(base_url, model if model and model != "auto" else None, key)
        self.base_url = self.client.base_url
        self.model = self.client.model  # resolved now: a wrong URL or name fails here, not at the first message
        self.last_stats: dict = {}

    @property
    def name(self) -> str:
        return self.model

    def describe(self) -> str:
        return f"{self.model} @ {self.base_url}"

    def stream(self, messages: list[dict], gen: dict) -> Iterator[str]:
        started, n = time.perf_counter(), 0
        try:
            from camp.multimodal.messages import to_openai  # pictures travel as data: URIs

            for piece in self.client.chat(to_openai(messages), stream=True, **gen):
                n += 1
                yield piece
        finally:
            self.last_stats = {"chunks": n, "seconds": time.perf_counter() - started}


# ===================================================================== session
class ChatSession:
    """A conversation: `history` (OpenAI-style messages, without the system message), `system`, `gen`."""

    def __init__(self, backend, *, system: str | None = None, gen: dict | None = None):
        self.backend = backend
        self.system = system
        self.gen: dict = {**DEFAULT_GEN, **(gen or {})}
        self.history: list[dict] = []

    # -------------------------------------------------------------- conversation
    def messages(self) -> list[dict]:
        sys_msg = [{"role": "system", "content": self.system}] if self.system else []
        return sys_msg + [dict(m) for m in self.history]

    def stream(self, message: str, image=None, **gen) -> Iterator[str]:
        """Yield the reply in pieces as tokens arrive. The turn joins `history` when the stream ends, also
        when the consumer stops early (the partial reply is kept); a failed turn is not recorded.
        `image`: a picture (file path, bytes, PIL image, numpy array) or a list of them, for vision models."""
        if not isinstance(message, str) or not message.strip():
            raise CampError("empty message — type something to say")
        settings = {**self.gen, **gen}
        from camp.multimodal.chat import user_turn  # checks the pictures, and that this model can see them

        turn = user_turn(self.backend, message, image)
        request = self.messages() + [turn]
        return self._run(turn["content"], request, settings)

    def _run(self, message, request, settings):
        parts: list[str] = []
        keep = True
        try:
            for piece in self.backend.stream(request, settings):
                parts.append(piece)
                yield piece
        except (GeneratorExit, KeyboardInterrupt):
            raise  # stopped early: keep the partial reply
        except BaseException:
            keep = False
            raise
        finally:
            if keep:
                self.history.append({"role": "user", "content": message})
                self.history.append({"role": "assistant", "content": "".join(parts)})

    def ask(self, message: str, image=None, **gen) -> str:
        """The whole reply (`image`: see stream)."""
        return "".join(self.stream(message, image, **gen))

    def reset(self) -> ChatSession:
        self.history.clear()
        return self

    def fork(self) -> ChatSession:
        """A new, empty conversation over the same loaded model (one per browser tab in the web demo)."""
        return ChatSession(self.backend, system=self.system, gen=dict(self.gen))

    @property
    def model(self) -> str:
        return self.backend.name

    @property
    def last_stats(self) -> dict:
        """Tokens and seconds of the last reply (tokens: in-process backend only)."""
        return dict(self.backend.last_stats)

    # -------------------------------------------------------------- views
    def widget(self):
        from camp.ui.chat_widget import ChatWidget

        return ChatWidget(self)

    def __repr__(self):
        turns = len(self.history) // 2
        sys_txt = f", system={self.system[:40]!r}" if self.system else ""
        gen = {k: v for k, v in self.gen.items() if v is not None}
        return (
            f"<ChatSession {self.backend.describe()}, {turns} turn(s){sys_txt}, gen={gen}> "
            "— .ask(text), .stream(text), .widget(), .reset()"
        )

    def _repr_markdown_(self):
        lines = [f"**ChatSession** — {self.backend.describe()}, {len(self.history) // 2} turn(s)  "]
        lines.append(f"generation: `{ {k: v for k, v in self.gen.items() if v is not None} }`  ")
        if self.system:
            lines.append(f"system: *{self.system}*  ")
        for m in self.history[-6:]:
            from camp.multimodal.messages import text_of

            text = text_of(m["content"]).replace("\n", " ")
            lines.append(f"- **{m['role']}**: {text[:200]}")
        lines.append("\n`.ask(text)` · `.stream(text)` · `.widget()` · `.reset()`")
        return "\n".join(lines)


def chat(
    model: str | os.PathLike = "auto",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    system: str | None = None,
    **gen,
) -> ChatSession:
    """A chat session with `model`: a catalogue name, "auto" (the profile's default), a local folder, or, with
    `base_url`, the name a server serves ("auto": its first /v1/models entry). `gen`: max_new_tokens (256),
    temperature (0 = greedy), top_p, do_sample, repetition_penalty; anything else goes to generate()."""
    if base_url:
        backend = EndpointBackend(base_url, api_key, None if model in (None, "auto") else str(model))
    else:
        backend = load_local(_resolve_folder(model))
    return ChatSession(backend, system=system, gen=gen)
