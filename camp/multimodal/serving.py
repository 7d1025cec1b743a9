"""Pictures at the server: camp's face in front of `transformers serve` checks every image part before the model
sees it, so bad input is a 400 with a reason and never takes the server down.

Checked per request: an image sent to a text-only model; an `image_url` that is not a data: URI (the server is
offline: no web fetches); a data URI that is not an image, is truncated, or is above camp's limits
(camp.multimodal.images). The LMDeploy side (GPU): `lmdeploy_plan`/`lmdeploy_extra` give camp.serve the plan and
flags of a course vision-language model (camp.multimodal.lmdeploy_vl).
"""

from __future__ import annotations

from camp.multimodal import images
from camp.runtime.errors import CampError


def image_parts(body: dict) -> list:
    """The image parts of a chat request's messages."""
    out = []
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            out += [p for p in c if isinstance(p, dict) and p.get("type") in ("image_url", "image", "input_image")]
    return out


def check_request(body: dict, vision: bool, model_name: str) -> str | None:
    """Why the request cannot go to the model (one line), or None when its pictures are fine."""
    parts = image_parts(body)
    if not parts:
        return None
    if not vision:
        return (f"{model_name} is a text-only model and cannot see images — send text only, or serve a "
                "vision-language model (tiny-vl, internvl2-2b)")
    for k, p in enumerate(parts, 1):
        url = p.get("image_url")
        url = url.get("url") if isinstance(url, dict) else (url or p.get("url") or p.get("image"))
        try:
            images.check_bytes(images.data_uri_bytes(url), f"image {k}")
        except CampError as exc:
            return str(exc)
    return None


def lmdeploy_plan(model, folder, profile, quant=None, tp=None):
    """The serving plan for a course vision-language model (None for anything else: the text plan applies)."""
    from camp.multimodal.backend import is_vision_folder

    if not is_vision_folder(folder):
        return None
    from camp.multimodal import lmdeploy_vl

    try:
        lmdeploy_vl.spec(model)
    except CampError:
        return None
    return lmdeploy_vl.plan(model, profile, tp=tp, quant=quant)


def lmdeploy_extra(model, folder) -> list[str]:
    """Extra `lmdeploy serve api_server` flags for a course vision-language model: its session length."""
    from camp.multimodal.backend import is_vision_folder

    if not is_vision_folder(folder):
        return []
    from camp.multimodal import lmdeploy_vl

    try:
        return ["--session-len", str(lmdeploy_vl.spec(model)[1].session_len)]
    except CampError:
        return []
