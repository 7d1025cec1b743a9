"""The image hook of camp.chat: one user turn with pictures, refused when the model cannot see them."""

from __future__ import annotations

from camp.multimodal import messages
from camp.runtime.errors import CampError
from camp.runtime.i18n import t


def user_turn(backend, text: str, image=None) -> dict:
    """The user message for `text` and `image` (None, one, or a list); CampError when `backend` is a text-only
    model (an endpoint decides for itself: its server answers)."""
    pics = messages.as_list(image)
    if pics and getattr(backend, "vision", None) is False:
        raise CampError(t(f"{backend.describe()} 是纯文本模型，看不到图片 — 换一个视觉语言模型（tiny-vl、"
                          "internvl2-2b、internlm-xcomposer2-7b），或去掉 image=",
                          f"{backend.describe()} is a text-only model and cannot see images — use a vision-language "
                          "model (tiny-vl, internvl2-2b, internlm-xcomposer2-7b), or leave image= out"))
    return messages.user_message(text, pics or None)
