"""In-process image chat: a LLaVA-style folder (tiny-vl, a fine-tuned tiny-vl) loaded with its processor.

The conversation code stays the same (camp.conversation.local streams tokens from `model.generate`); only loading
and encoding differ: the processor renders the chat template (an `<image>` placeholder per picture), expands each
placeholder to the model's image tokens and turns the pictures into pixel values.
"""

from __future__ import annotations

import json
from pathlib import Path

from camp.runtime.errors import CampError
from camp.runtime.i18n import t

VISION_TYPES = ("llava", "llava_next", "internvl", "internvl_chat", "internlmxcomposer2", "qwen2_vl", "idefics3")


def folder_config(folder: str | Path) -> dict:
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_vision_folder(folder: str | Path) -> bool:
    """A model folder that takes images: a vision config, or a known vision-language model type."""
    cfg = folder_config(folder)
    mt = str(cfg.get("model_type", "")).lower()
    return bool(cfg.get("vision_config")) or mt in VISION_TYPES or "xcomposer" in mt


def is_llava_folder(folder: str | Path) -> bool:
    return str(folder_config(folder).get("model_type", "")).lower() == "llava"


def backend_class(folder: Path, text_class):
    """The backend class for `folder`: VisionBackend for LLaVA folders, `text_class` for text models."""
    if not is_vision_folder(folder):
        return text_class
    if not is_llava_folder(folder):
        raise CampError(t(
            f"{folder} 是带自定义代码的视觉语言模型（InternVL2 / XComposer2 一类），camp 在 GPU 上用 LMDeploy 的 VLM "
            "流水线运行它：camp.serve(模型) 后用 camp.chat(模型, base_url=ep.base_url)，或 "
            "camp.multimodal.lmdeploy_vl.pipeline(模型, 图片, 问题)",
            f"{folder} is a remote-code vision-language model (InternVL2 / XComposer2 kind): camp runs it with "
            "LMDeploy's VLM pipeline on a GPU — camp.serve(model) then camp.chat(model, base_url=ep.base_url), or "
            "camp.multimodal.lmdeploy_vl.pipeline(model, image, prompt)"))
    return _vision_class(text_class)


_CLASSES: dict = {}


def _vision_class(text_class):
    if text_class in _CLASSES:
        return _CLASSES[text_class]

    class VisionBackend(text_class):
        """A LLaVA folder: AutoProcessor + AutoModelForImageTextToText, images in the user's turns."""

        kind = "transformers"
        vision = True

        def _load(self, folder: Path, dtype_kw: dict):
            from transformers import AutoModelForImageTextToText, AutoProcessor

            try:
                self.processor = AutoProcessor.from_pretrained(folder)
                model = AutoModelForImageTextToText.from_pretrained(folder, **dtype_kw)
            except (OSError, ValueError) as exc:
                raise CampError(f"cannot load a vision-language model from {folder}: {exc}") from exc
            return self.processor.tokenizer, model

        def describe(self) -> str:
            return f"{self.folder.name} (transformers, vision-language, {self.device} {self.dtype})"

        def encode(self, messages: list[dict]):
            from camp.multimodal import messages as mm

            text = self.processor.apply_chat_template(mm.for_template(messages), add_generation_prompt=True,
                                                      tokenize=False)
            pics = mm.images_of(messages)
            enc = self.processor(text=text, images=pics or None, return_tensors="pt")
            keep = ("input_ids", "attention_mask", "pixel_values")
            return {k: v.to(self.model.device) for k, v in enc.items() if k in keep}

    _CLASSES[text_class] = VisionBackend
    return VisionBackend
