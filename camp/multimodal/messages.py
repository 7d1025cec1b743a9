"""Chat messages with pictures: one user turn = text plus image parts, in the OpenAI content-part shape.

In a ChatSession's history an image part holds the decoded picture: {"type": "image", "image": <PIL image>}.
`to_openai()` turns those into {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}} for an
endpoint; the in-process vision backend hands them to the model's processor.
"""

from __future__ import annotations

from camp.multimodal import images as _images


def as_list(image) -> list:
    """`image=` may be one image or a list/tuple of them (None: none)."""
    if image is None:
        return []
    if isinstance(image, (list, tuple)):
        return list(image)
    return [image]


def user_message(text: str, image=None) -> dict:
    """The user turn: plain text, or the images (checked and decoded now) followed by the text."""
    pics = [_images.load(x) for x in as_list(image)]
    if not pics:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*({"type": "image", "image": p} for p in pics), {"type": "text", "text": text}]}


def has_images(messages) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") in ("image", "image_url")
               for p in m["content"]) for m in messages)


def images_of(messages) -> list:
    """The decoded pictures of every image part, in order."""
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if p.get("type") == "image":
                    out.append(p["image"])
                elif p.get("type") == "image_url":
                    out.append(_images.load((p.get("image_url") or {}).get("url", "")))
    return out


def text_of(content) -> str:
    """A message's text, an image shown as [图片]/[image]: for transcripts and summaries."""
    if isinstance(content, str):
        return content
    from camp.runtime.i18n import t

    return "".join(p.get("text", "") if p.get("type") == "text" else t("[图片] ", "[image] ") for p in content or [])


def to_openai(messages) -> list[dict]:
    """The messages with every decoded image as a PNG data URI (OpenAI `image_url` parts)."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            parts = []
            for p in c:
                if p.get("type") == "image":
                    parts.append({"type": "image_url", "image_url": {"url": _images.to_data_uri(p["image"])}})
                else:
                    parts.append(p)
            m = {**m, "content": parts}
        out.append(m)
    return out


def for_template(messages) -> list[dict]:
    """The messages as a chat template takes them: image parts stripped to {"type": "image"}."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = [{"type": "image"} if p.get("type") in ("image", "image_url") else p for p in c]
        out.append({**m, "content": c})
    return out
