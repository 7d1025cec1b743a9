"""Models: the course catalogue (catalogue), getting a model folder — shared folder, cache, ModelScope, HF (hub) —,
models camp made and registered by name (registry), the InternLM2 → Llama normaliser (internlm2), and the embedded
tiny model (tiny)."""

from camp.models.hub import (
    download,
    find_local,
    hf_endpoint,
    local_folder,
    modelscope_endpoint,
    probe,
    probe_many,
    resolve,
    verify,
)
from camp.models.listing import Model, catalogue, get, lesson_model
from camp.models.registry import register, register_new, registered, unregister

__all__ = ["Model", "catalogue", "get", "lesson_model", "download", "find_local", "hf_endpoint", "local_folder",
           "modelscope_endpoint", "probe", "probe_many", "resolve", "verify", "register", "register_new", "registered",
           "unregister"]
