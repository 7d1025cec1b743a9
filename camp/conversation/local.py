"""The in-process backend: a transformers model loaded once per folder, streamed token by token.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from camp.runtime.errors import CampError

# InternLM2's template: used only when a folder has no chat template of its own (the course models all do).
INTERNLM2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ===================================================================== incremental decoding
class IncrementalDecoder:
    """Turns token ids arriving one by one into text pieces.

    Decodes a short window (a little emitted context + the new ids) rather than the whole answer, so each step
    costs about the same; tokens that end inside a multi-byte UTF-8 character (byte-level BPE splits CJK
    characters) decode to U+FFFD and are held back until the character is complete. Special tokens (the
    chat-template markers, eos) are skipped.
    """

    WINDOW = 32  # ids; past this the window restarts at the last emitted id

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # ids up to here are already emitted
        self._before: str | None = ""  # decode(ids[prefix:read]), None when not known yet

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, ids) -> str:
        self.ids.extend(ids)
        if self._before is None:
            self._before = self._decode(self.ids[self._prefix : self._read])
        before = self._before
        text = self._decode(self.ids[self._prefix :])
        if len(text) > len(before) and not text.endswith("\ufffd"):
            if len(self.ids) - self._prefix > self.WINDOW:
                self._prefix, self._before = self._read, None
            else:
                self._before = text  # one decode per step while the window is short
            self._read = len(self.ids)
            return text[len(before) :]
        return ""

    def flush(self) -> str:
        """What is left at the end; an incomplete trailing character (cut by max_new_tokens) is dropped."""
        before = self._decode(self.ids[self._prefix : self._read]) if self._before is None else self._before
        text = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        self._before = ""
        return text[len(before) :].rstrip("\ufffd") if len(text) > len(before) else ""


# ===================================================================== in-process backend
_TOKENS, _END, _ERROR = "tokens", "end", "error"

HANDOVER_EVERY = 0.02  # s: tokens faster than this travel to the consumer in batches (see _streamer_class)


class _Stopped(Exception):
    """Raised inside generate() by the streamer: the consumer went away."""


_STREAMER = None


def _streamer_class():
    """A transformers streamer that hands raw token ids to the consumer thread over a queue.

    Decoding happens on the consumer's side, so generation never waits for it. Ids produced faster than
    HANDOVER_EVERY are handed over together (50 updates/s is as smooth as a screen shows): waking the
    consumer (and trading the GIL) at every token cost 5–15 % of the tiny model's speed on a busy 2-core
    machine; a model slower than that interval still streams token by token. Stopping
    raises inside generate(), which costs nothing per step (a stopping criterion builds a tensor per token).
    """
    global _STREAMER
    if _STREAMER is None:
        from transformers.generation.streamers import BaseStreamer

        class IdStreamer(BaseStreamer):
            def __init__(self, q, stop):
                self.q, self.stop = q, stop
                self.buf: list[int] = []
                self.last = 0.0
                self.prompt_seen = False

            def put(self, value):
                if self.stop.is_set():
                    raise _Stopped
                if not self.prompt_seen:  # generate() first pushes the prompt
                    self.prompt_seen = True
                    return
                self.buf.extend(value.reshape(-1).tolist())
                now = time.monotonic()
                if now - self.last >= HANDOVER_EVERY:
                    self.q.put((_TOKENS, self.buf))
                    self.buf, self.last = [], now

            def end(self):
                if self.buf:
                    self.q.put((_TOKENS, self.buf))
                    self.buf = []

        _STREAMER = IdStreamer
    return _STREAMER


_loaded: dict[tuple[str, str, str], LocalBackend] = {}  # (folder, device, dtype) -> loaded model, once per process
_loaded_lock = threading.Lock()


def _needs_remote_code(folder: Path) -> bool:
    # Only folders that ship their own modelling code (raw InternLM2 checkpoints) get trust_remote_code.
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(cfg.get("auto_map"))


def _device_dtype() -> tuple[str, str]:
    try:
        from camp.runtime.hardware import profile

        prof = profile()
        device, dtype = prof.device, str(prof.dtype)
    except ImportError:  # hardware module not there (partial install): ask torch directly
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "bfloat16" if device == "cuda" else "float32"
    if device == "cpu":
        dtype = "float32"  # half precision on CPU is slow or unsupported for many ops
    return device, dtype.replace("torch.", "")


class LocalBackend:
    """A transformers model + tokenizer loaded once; generation runs in a thread and streams over a queue."""

    kind = "transformers"

    def __init__(self, folder: Path, device: str, dtype: str):
        import torch
        import transformers

        self.folder, self.device, self.dtype = folder, device, dtype
        # transformers 5 renamed torch_dtype → dtype
        dkey = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        # transformers 5 draws a "Loading weights" bar on stderr: in JupyterLab a pink error box under every chat cell
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()
        try:
            self.tokenizer, model = self._load(folder, {dkey: getattr(torch, dtype)})
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        self.model = model.to(device).eval()
        self.lock = threading.Lock()  # one generation at a time per loaded model (Streamlit serves many tabs)

        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            tok.chat_template = INTERNLM2_TEMPLATE
        eos: list[int] = []
        gc_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for i in gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos]:
            if i is not None and i not in eos:
                eos.append(int(i))
        # Checkpoints whose generation_config lacks <|im_end|> would otherwise run on past the turn's end.
        extra = [tok.eos_token_id]
        if "<|im_end|>" in tok.chat_template and "<|im_end|>" in tok.get_vocab():
            extra.append(tok.convert_tokens_to_ids("<|im_end|>"))
        eos += [int(i) for i in extra if i is not None and int(i) not in eos]
        self.eos_token_id = eos
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else None)
        self.last_stats: dict = {}

    vision = False  # sees images: camp.multimodal.backend.VisionBackend

    def _load(self, folder: Path, dtype_kw: dict):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        trust = _needs_remote_code(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trust, **dtype_kw)
        except (OSError, ValueError) as exc:
            raise CampError(f"cannot load a chat model from {folder}: {exc}") from exc
        return tokenizer, model

    @property
    def name(self) -> str:
        return str(self.folder)

    def describe(self) -> str:
        return f"{self.folder.name} (transformers, {self.device} {self.dtype})"

    def encode(self, messages: list[dict]):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = self.tokenizer(ids, add_special_tokens=False, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def generate_kwargs(self, gen: dict) -> dict:
        kw = {k: v for k, v in gen.items() if v is not None}
        t = kw.get("temperature")
        if t is not None and t <= 0:  # temperature 0 means greedy, as in the OpenAI API
            kw.pop("temperature")
            kw.pop("top_p", None)
            kw["do_sample"] = False
        elif t is not None and "do_sample" not in kw:
            kw["do_sample"] = True
        if not kw.get("do_sample", getattr(self.model.generation_config, "do_sample", False)):
            kw.pop("temperature", None)  # ignored when greedy; transformers warns about it
            kw.pop("top_p", None)
        kw.setdefault("eos_token_id", self.eos_token_id)
        if self.pad_token_id is not None:
            kw.setdefault("pad_token_id", self.pad_token_id)
        return kw

    def stream(self, messages: list[dict], gen: dict) -> Iterator[str]:
        import torch

        inputs = self.encode(messages)
        kw = self.generate_kwargs(gen)
        q: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        streamer = _streamer_class()(q, stop)

        def work():
            try:
                with self.lock, torch.inference_mode():
                    self.model.generate(**inputs, streamer=streamer, **kw)
            except _Stopped:
                q.put((_END, None))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer, never swallowed
                q.put((_ERROR, exc))
            else:
                q.put((_END, None))

        decoder = IncrementalDecoder(self.tokenizer)
        started = time.perf_counter()
        thread = threading.Thread(target=work, name="camp-generate", daemon=True)
        thread.start()
        try:
            done = False
            while not done:
                try:
                    items = [q.get(timeout=1.0)]
                except queue.Empty:
                    if not thread.is_alive():  # cannot happen (work() always reports) — but never hang
                        raise RuntimeError("the generation thread ended without a result") from None
                    continue
                while True:  # take everything that arrived meanwhile: one decode for the lot
                    try:
                        items.append(q.get_nowait())
                    except queue.Empty:
                        break
                ids: list[int] = []
                error = None
                for kind, value in items:
                    if kind == _TOKENS:
                        ids.extend(value)
                    elif kind == _ERROR:
                        error = value
                    else:
                        done = True
                piece = decoder.push(ids) if ids else ""
                if piece:
                    yield piece
                if error is not None:
                    raise error
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            stop.set()  # the consumer stopped early (or failed): end generation at the next token
            thread.join()
            seconds = time.perf_counter() - started
            n = len(decoder.ids)
            self.last_stats = {"tokens": n, "seconds": seconds, "tokens_per_s": n / seconds if seconds else 0.0}


def load_local(folder: str | os.PathLike) -> LocalBackend:
    """The loaded model for `folder` (loaded on the first call, then reused by every session)."""
    folder = Path(folder).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise CampError(f"{folder} is not a model folder (no config.json) — pass a catalogue name or a model folder")
    device, dtype = _device_dtype()
    key = (str(folder), device, dtype)
    with _loaded_lock:
        backend = _loaded.get(key)
        if backend is None:
            # a vision-language folder gets the image-aware backend
            from camp.multimodal.backend import backend_class

            backend = _loaded[key] = backend_class(folder, LocalBackend)(folder, device, dtype)
    return backend


def _resolve_folder(model: str | os.PathLike) -> Path:
    """Catalogue name / "auto" / folder → the folder to load. camp.models also normalises a raw InternLM2
    checkpoint folder (its remote code breaks on transformers 5), so folders go through it too."""
    try:
        from camp.models.hub import resolve
    except ImportError as exc:
        p = Path(model).expanduser()
        if p.is_dir():
            return p
        raise CampError(f"cannot resolve model {model!r}: camp.models is not available ({exc})") from exc
    return Path(resolve(model))
