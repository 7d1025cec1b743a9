"""The course's vision-language models on a GPU: LMDeploy's VLM pipeline and `lmdeploy serve api_server`.

InternVL2-2B (camp 3) and InternLM-XComposer2-7B (the L2 demo) ship their own modelling code; LMDeploy runs them
(TurboMind) with their vision part in PyTorch, in the lmdeploy env. camp writes the command lines and a small
pipeline script into a run folder, so a student can read and rerun them by hand:

    lmdeploy serve api_server MODEL_DIR --server-name 127.0.0.1 --server-port 23333 --backend turbomind --tp 1
        --cache-max-entry-count 0.8 --quant-policy 0 --model-format hf --model-name internvl2-2b --session-len 8192
    python vl_pipeline.py   (from lmdeploy import pipeline; pipe((prompt, load_image(path))) …)

Memory (`plan()`): the serving plan of camp.serving.memory with the whole model's weights (vision tower included —
the catalogue's parameter count) and a KV cache that must hold a conversation WITH its image tokens: InternVL2 cuts
a picture into up to 12 tiles of 448 px plus a thumbnail, 256 tokens each (3328); XComposer2 sees one 490-px view
as 1225 tokens. Every function here is pure apart from `pipeline()`: the unit tests compare whole command lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.stage import Stage, Step


@dataclass(frozen=True)
class VLSpec:
    image_tokens: int  # image tokens of one picture, at most (the KV cache must hold them)
    session_len: int  # --session-len: text + image tokens of one conversation
    backend: str = "turbomind"
    vision_gib: float = 1.0  # the vision tower's activations for one batch of pictures (estimate)


SPECS = {
    # InternVL2: dynamic tiling, max_dynamic_patch 12 (+1 thumbnail) × 256 tokens
    "internvl2": VLSpec(image_tokens=13 * 256, session_len=8192),
    # XComposer2: one 490×490 view, patch 14 → 35² tokens
    "internlm-xcomposer2": VLSpec(image_tokens=35 * 35, session_len=4096, vision_gib=1.5),
}

PIPELINE_SCRIPT = "vl_pipeline.py"


def spec(model) -> tuple[str, VLSpec]:
    """(catalogue name, VLSpec) of a course vision-language model; CampError for anything else."""
    from camp import models

    m = models.get(str(model))
    if m.arch not in SPECS:
        vl = ", ".join(x.name for x in models.catalogue() if x.arch in SPECS)
        raise CampError(t(f"{m.name} 不是 LMDeploy 运行的课程视觉语言模型（可选：{vl}）",
                          f"{m.name} is not a course vision-language model LMDeploy runs (choose: {vl})"))
    return m.name, SPECS[m.arch]


def plan(model, profile, *, tp: int | None = None, quant=None):
    """camp.serving.memory's serving plan for a course VLM: weights of the whole model, the vision tower's
    activations in the runtime, and a KV cache that holds at least one conversation with a picture."""
    from camp.serving import memory
    from camp.training.plan import model_arch

    name, s = spec(model)
    arch = model_arch(name)
    p = memory.plan_serving(arch, profile, quant=quant, tp=tp)
    # the vision tower runs beside the language model: its activations come out of the KV cache's share
    left = p.free_gib - p.weights_gib
    kv = max(0.0, p.kv_gib - s.vision_gib)
    ratio = round(int(kv / left / memory.RATIO_STEP + 1e-9) * memory.RATIO_STEP, 2) if left > 0 else 0.0
    tokens = int(p.kv_tokens * ratio / p.cache_max_entry_count) if p.cache_max_entry_count else 0
    need = s.image_tokens + memory.MIN_TOKENS
    if tokens < need:
        raise CampError(t(
            f"{name} 在 {p.profile} 上放不下：KV 缓存只有 {tokens} 个 token，一段带图对话需要 {need} 个"
            f"（图片 {s.image_tokens} + 文本 {memory.MIN_TOKENS}）— 用更大的 profile，或 quant='kv4'",
            f"{name} does not fit {p.profile}: the KV cache holds {tokens} tokens, one conversation with a "
            f"picture needs {need} ({s.image_tokens} image + {memory.MIN_TOKENS} text) — use a bigger profile, "
            "or quant='kv4'"))
    notes = [*p.notes, f"vision tower activations: {s.vision_gib:g} GiB; one picture = {s.image_tokens} image tokens"]
    return replace(p, cache_max_entry_count=ratio, kv_gib=round(ratio * left, 3), kv_tokens=tokens,
                   runtime_gib=round(p.runtime_gib + s.vision_gib, 3), notes=notes)


def serve_command(model, model_dir, profile, *, port: int = 23333, host: str = "127.0.0.1",
                  api_key: str | None = None, tp: int | None = None, quant=None) -> list[str]:
    """`lmdeploy serve api_server …` for a course VLM on `profile`."""
    from camp.serving.engines.lmdeploy import lmdeploy_serve_command

    name, s = spec(model)
    p = plan(name, profile, tp=tp, quant=quant)
    cmd = lmdeploy_serve_command(model_dir, profile, quant, port, host, api_key, tp, model_name=name,
                                 backend=s.backend, plan=p)
    return cmd + ["--session-len", str(s.session_len)]


def pipeline_args(model, model_dir, profile, images: list, prompts: list[str], out: str | Path,
                  *, tp: int | None = None) -> list[str]:
    """The arguments of the pipeline script (after `python vl_pipeline.py`)."""
    name, s = spec(model)
    if len(images) != len(prompts):
        raise CampError(f"{len(images)} image(s) but {len(prompts)} prompt(s): give one prompt per image")
    p = plan(name, profile, tp=tp)
    args = [str(model_dir), "--backend", s.backend, "--tp", str(p.tp), "--session-len", str(s.session_len),
            "--cache-max-entry-count", f"{p.cache_max_entry_count:g}", "--out", str(out)]
    for img, prompt in zip(images, prompts, strict=True):
        args += ["--image", str(img), "--prompt", prompt]
    return args


# The script the lmdeploy env runs: LMDeploy's own VLM pipeline, nothing else.
SCRIPT = '''"""LMDeploy's VLM pipeline on local pictures: written by camp (rerun it by hand with the same arguments)."""
import argparse
import json

from lmdeploy import GenerationConfig, PytorchEngineConfig, TurbomindEngineConfig, pipeline
from lmdeploy.vl import load_image

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--backend", default="turbomind", choices=["turbomind", "pytorch"])
ap.add_argument("--tp", type=int, default=1)
ap.add_argument("--session-len", type=int, default=8192)
ap.add_argument("--cache-max-entry-count", type=float, default=0.8)
ap.add_argument("--image", action="append", default=[])
ap.add_argument("--prompt", action="append", default=[])
ap.add_argument("--max-new-tokens", type=int, default=512)
ap.add_argument("--out", required=True)
a = ap.parse_args()
Engine = TurbomindEngineConfig if a.backend == "turbomind" else PytorchEngineConfig
pipe = pipeline(a.model, backend_config=Engine(tp=a.tp, session_len=a.session_len,
                                               cache_max_entry_count=a.cache_max_entry_count))
gen = GenerationConfig(max_new_tokens=a.max_new_tokens, do_sample=False)
answers = []
for path, prompt in zip(a.image, a.prompt):
    r = pipe((prompt, load_image(path)), gen_config=gen)
    print(f"[camp] {path}: {r.text}", flush=True)
    answers.append({"image": path, "prompt": prompt, "answer": r.text})
with open(a.out, "w", encoding="utf-8") as f:
    json.dump(answers, f, ensure_ascii=False, indent=1)
'''


class PipelineStage(Stage):
    """One run of LMDeploy's VLM pipeline over pictures and prompts (GPU profiles)."""

    name = "vl-pipeline"
    env = "lmdeploy"

    def __init__(self, model, images, prompts, *, profile=None, tp=None):
        from camp.runtime import hardware

        self.model, self.prompts, self.tp = model, list(prompts), tp
        self.images = list(images)
        self.profile = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")

    def validate(self):
        from camp.multimodal import images as _images

        spec(self.model)
        if self.profile.device != "cuda":
            raise CampError(t(f"LMDeploy 的 VLM 流水线只能在 CUDA GPU 上运行，profile {self.profile.name} 没有 GPU — "
                              "在 CPU 上用内置的 tiny-vl：camp.chat('tiny-vl').ask(问题, image=图片)",
                              f"LMDeploy's VLM pipeline needs a CUDA GPU; profile {self.profile.name} has none — on a "
                              "CPU use the embedded tiny-vl: camp.chat('tiny-vl').ask(question, image=picture)"))
        self.pictures = [_images.load(x) for x in self.images]
        plan(self.model, self.profile, tp=self.tp)  # refuses a model that does not fit before anything starts

    def prepare(self, run_dir):
        from camp.models.hub import resolve

        self.model_dir = Path(resolve(self.model, profile=self.profile))
        (run_dir / PIPELINE_SCRIPT).write_text(SCRIPT, encoding="utf-8")
        self.paths = []
        for i, pic in enumerate(self.pictures):
            path = run_dir / f"image-{i}.png"
            pic.save(path)
            self.paths.append(path)
        return None

    def steps(self, run_dir):
        from camp.runtime import envs

        out = run_dir / "answers.json"
        args = pipeline_args(self.model, self.model_dir, self.profile, self.paths, self.prompts, out, tp=self.tp)

        def check(job):
            return None if out.is_file() else "exited 0 but answers.json is missing"

        yield Step("lmdeploy vl pipeline", [str(envs.python("lmdeploy")), PIPELINE_SCRIPT, *args],
                   run_dir / "jobs" / "pipeline", env="lmdeploy", cwd=run_dir, check=check,
                   hints=[(r"out of memory", "the GPU ran out of memory: a smaller model or a bigger profile"),
                          (r"No module named '?(timm|flash_attn)", "the lmdeploy env lacks a package the model's "
                           "own code needs (InternVL2: timm): add it to environments/lmdeploy.txt")])

    def finish(self, run_dir, jobs):
        return [a["answer"] for a in json.loads((run_dir / "answers.json").read_text(encoding="utf-8"))]


def pipeline(model, image, prompt, *, profile=None, tp=None, run_dir=None, show=True) -> list[str]:
    """Answers of a course VLM (internvl2-2b, internlm-xcomposer2-7b) through LMDeploy's VLM pipeline, one per
    (picture, prompt); `image`/`prompt` may be lists. GPU profiles only (on CPU: tiny-vl with camp.chat)."""
    from camp.multimodal.messages import as_list

    pics = as_list(image)
    prompts = as_list(prompt)
    if len(prompts) == 1 and len(pics) > 1:
        prompts = prompts * len(pics)
    return PipelineStage(model, pics, prompts, profile=profile, tp=tp).run(run_dir=run_dir, show=show)
