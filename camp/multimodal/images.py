"""Images in, checked: what a student may hand to a vision-language model, and the limits camp holds to.

    load(x)        -> an RGB PIL image, from a file path, raw bytes, a PIL image, a numpy array or a data: URI
    to_data_uri(x) -> "data:image/png;base64,…" (the OpenAI `image_url` form every endpoint takes)
    check_bytes(b) -> (width, height, format) of an encoded image, fully decoded once (the server's check)

Everything that is not a usable image raises ImageError (a CampError) naming the problem and the fix: not an image,
a truncated or corrupt file, an image above MAX_PIXELS, a web URL (the course machines have no internet: download
the file first). Pillow is imported on first use.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

from camp.runtime.errors import CampError
from camp.runtime.i18n import t

# Above this the image is refused before it is decoded (a 50-megapixel photo decodes to ~150 MB of RGB, and every
# VLM here shrinks it to a few hundred pixels anyway). 25 MP passes a 6000×4000 camera photo.
MAX_PIXELS = 25_000_000
# Encoded size limit for one image sent to a server (a data URI is ~4/3 of it).
MAX_BYTES = 20 * 1024 * 1024
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

_DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.-]+)*;base64,", re.I)


class ImageError(CampError):
    """An image camp cannot use: the message names the problem and what to do."""


def _pil():
    try:
        from PIL import Image, ImageFile, UnidentifiedImageError
    except ImportError as exc:  # Pillow comes with matplotlib in the core env
        raise CampError("Pillow is missing — install it into this environment (pip install pillow)") from exc
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off file is an error, never a half-grey picture
    return Image, UnidentifiedImageError


def describe(image) -> str:
    """A short label for messages: the file name, or the kind of object."""
    if isinstance(image, (str, os.PathLike)):
        s = os.fspath(image)
        return "a data: URI" if s.startswith("data:") else s
    return type(image).__name__


def _limit_message(w: int, h: int, where: str) -> str:
    mp = w * h / 1e6
    return t(f"{where} 有 {mp:.1f} 百万像素（{w}×{h}），超过 camp 的上限 {MAX_PIXELS / 1e6:.0f} 百万像素 — "
             "请先缩小图片（例如 PIL 的 img.thumbnail((2048, 2048))）再发送",
             f"{where} has {mp:.1f} megapixels ({w}×{h}), above camp's limit of {MAX_PIXELS / 1e6:.0f} megapixels — "
             "shrink it first (e.g. PIL's img.thumbnail((2048, 2048))) and send it again")


def _open_bytes(data: bytes, where: str):
    """Decode encoded image bytes fully (Pillow opens lazily: a truncated file fails only on load)."""
    Image, Unidentified = _pil()
    if not data:
        raise ImageError(t(f"{where} 是空文件 — 请换一个图片文件", f"{where} is empty — pass an image file"))
    if len(data) > MAX_BYTES:
        raise ImageError(t(f"{where} 有 {len(data) / 2**20:.0f} MB，超过上限 {MAX_BYTES // 2**20} MB — 请先压缩或缩小",
                           f"{where} is {len(data) / 2**20:.0f} MB, above the {MAX_BYTES // 2**20} MB limit — "
                           "compress or shrink it first"))
    try:
        img = Image.open(io.BytesIO(data))
    except Unidentified:
        raise ImageError(t(f"{where} 不是 camp 能读的图片（支持 {', '.join(FORMATS)}）— 请检查文件",
                           f"{where} is not an image camp can read ({', '.join(FORMATS)}) — check the file")) from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(_limit_message(w, h, where))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:  # "image file is truncated", broken chunks
        raise ImageError(t(f"{where} 已损坏或不完整（{exc}）— 请重新保存或重新下载该图片",
                           f"{where} is truncated or corrupt ({exc}) — save or download it again")) from None
    return img


def _rgb(img):
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "P") and ("transparency" in img.info or img.mode != "P"):
        Image, _ = _pil()
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent parts show as white, as a viewer shows them
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def _from_array(arr):
    import numpy as np

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first (torch layout)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or a.size == 0:
        raise ImageError(t(f"数组形状 {a.shape} 不是图片 — 需要 (高, 宽)、(高, 宽, 3) 或 (高, 宽, 4)",
                           f"an array of shape {a.shape} is not an image — pass (H, W), (H, W, 3) or (H, W, 4)"))
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ImageError(_limit_message(a.shape[1], a.shape[0], "the array"))
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError(t("数组里有 NaN 或无穷大 — 图片数值应在 0–1 或 0–255 之间",
                               "the array holds NaN or infinity — image values must lie in 0–1 or 0–255"))
        a = a * 255.0 if a.max() <= 1.0 else a
    a = np.clip(a, 0, 255).astype(np.uint8)
    Image, _ = _pil()
    return Image.fromarray(a)


def read_source(image) -> tuple[bytes | None, object | None, str]:
    """(encoded bytes, or None) and (a PIL image, or None) for `image`, and its label: nothing decoded yet."""
    where = describe(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), None, "the image bytes"
    if isinstance(image, (str, os.PathLike)):
        s = os.fspath(image)
        if _DATA_URI.match(s):
            try:
                return base64.b64decode(s.split(",", 1)[1], validate=False), None, "the data: URI"
            except (ValueError, base64.binascii.Error):
                raise ImageError(t("data: URI 的 base64 部分无法解码", "the data: URI's base64 part does not decode")) from None
        if re.match(r"^(https?|ftp)://", s, re.I):
            raise ImageError(t(f"{s} 是网址：camp 不联网下载图片 — 请先把图片下载到本机，再传文件路径",
                               f"{s} is a web address: camp does not fetch images from the internet — download "
                               "the file first and pass its path"))
        p = Path(s).expanduser()
        if not p.is_file():
            raise ImageError(t(f"找不到图片文件 {p} — 请检查路径", f"no image file at {p} — check the path"))
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ImageError(t(f"{p} 有 {size / 2**20:.0f} MB，超过上限 {MAX_BYTES // 2**20} MB — 请先压缩或缩小",
                               f"{p} is {size / 2**20:.0f} MB, above the {MAX_BYTES // 2**20} MB limit — "
                               "compress or shrink it first"))
        return p.read_bytes(), None, str(p)
    try:
        Image, _ = _pil()
        if isinstance(image, Image.Image):
            return None, image, "the PIL image"
    except CampError:
        pass
    if hasattr(image, "__array__") or hasattr(image, "shape"):
        return None, _from_array(image), "the array"
    raise ImageError(t(f"不认识的图片类型 {where} — 请传文件路径、bytes、PIL 图片或 numpy 数组",
                       f"cannot use {where} as an image — pass a file path, bytes, a PIL image or a numpy array"))


def load(image):
    """An RGB PIL image from a path, bytes, a PIL image, a numpy array (H×W, H×W×3/4; uint8 or floats in 0–1) or a
    data: URI. ImageError names what is wrong."""
    data, img, where = read_source(image)
    if img is None:
        img = _open_bytes(data, where)
    else:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(_limit_message(w, h, where))
    return _rgb(img)


def check_bytes(data: bytes, where: str = "the image") -> tuple[int, int, str]:
    """(width, height, format) of encoded image bytes, decoded once in full; ImageError otherwise."""
    img = _open_bytes(data, where)
    return img.size[0], img.size[1], str(img.format or "?")


def to_png_bytes(image) -> bytes:
    img = load(image)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def to_data_uri(image) -> str:
    """The OpenAI content-part URL for `image`: a PNG data URI (lossless: the tiny model's colours stay exact)."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode("ascii")


def data_uri_bytes(uri: str) -> bytes:
    """The encoded image inside a data: URI (ImageError when it is not one)."""
    if not isinstance(uri, str) or not _DATA_URI.match(uri):
        raise ImageError(t("图片必须是 data:image/…;base64,… 形式（本机服务不联网下载网址）",
                           "the image must be a data:image/…;base64,… URI (local servers do not fetch web URLs)"))
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=False)
    except (ValueError, base64.binascii.Error):
        raise ImageError(t("data: URI 的 base64 部分无法解码", "the data: URI's base64 part does not decode")) from None
