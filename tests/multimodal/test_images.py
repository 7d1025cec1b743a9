"""Pictures in: every accepted form gives the same RGB picture; every unusable one a clear ImageError."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from camp.multimodal import images, scenes
from camp.runtime.errors import CampError


@pytest.fixture()
def pic():
    return scenes.scenes(1, seed=3)[0].pil()


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_every_form_gives_the_same_pixels(pic, tmp_path):
    path = tmp_path / "p.png"
    pic.save(path)
    want = np.asarray(pic)
    for form in (path, str(path), _png(pic), pic, np.asarray(pic), np.asarray(pic) / 255.0,
                 np.moveaxis(np.asarray(pic), -1, 0), images.to_data_uri(pic)):
        got = np.asarray(images.load(form))
        assert got.shape == want.shape and (np.abs(got.astype(int) - want).max() <= 1), type(form)


def test_grey_and_transparent_pictures_become_rgb():
    grey = images.load(np.zeros((5, 7), dtype=np.uint8))
    assert grey.mode == "RGB" and grey.size == (7, 5)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert images.load(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent shows as white


def test_not_an_image(tmp_path):
    f = tmp_path / "notes.png"
    f.write_text("hello, I am text")
    with pytest.raises(images.ImageError, match="not an image"):
        images.load(f)
    with pytest.raises(images.ImageError, match="not an image"):
        images.check_bytes(b"%PDF-1.4 ...")


def test_truncated_file_is_named(pic, tmp_path):
    data = _png(pic.resize((200, 200)))
    f = tmp_path / "cut.png"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(images.ImageError, match="truncated or corrupt") as err:
        images.load(f)
    assert "cut.png" in str(err.value)


def test_fifty_megapixels_refused_with_the_limit_named():
    big = Image.new("L", (8660, 5774))  # 50 MP: compresses to a small PNG, refused before decoding
    data = _png(big)
    with pytest.raises(images.ImageError, match=r"50\.0 .*25") as err:
        images.load(data)
    assert "8660×5774" in str(err.value)
    with pytest.raises(images.ImageError, match="25"):
        images.load(np.zeros((8000, 6500, 3), dtype=np.uint8))


def test_urls_missing_files_and_odd_objects():
    with pytest.raises(images.ImageError, match="download the file first|先把图片下载"):
        images.load("https://example.com/cat.png")
    with pytest.raises(images.ImageError, match="no image file|找不到"):
        images.load("/no/such/picture.png")
    with pytest.raises(images.ImageError, match="empty|空文件"):
        images.load(b"")
    with pytest.raises(CampError):
        images.load(42)
    with pytest.raises(images.ImageError, match="shape"):
        images.load(np.zeros((2, 3, 4, 5)))
    with pytest.raises(images.ImageError, match="NaN"):
        images.load(np.full((4, 4), np.nan))


def test_data_uri_round_trip(pic):
    uri = images.to_data_uri(pic)
    assert uri.startswith("data:image/png;base64,")
    assert images.check_bytes(images.data_uri_bytes(uri)) == (48, 48, "PNG")
    with pytest.raises(images.ImageError, match="data:image"):
        images.data_uri_bytes("http://example.com/x.png")
    assert base64.b64decode(uri.split(",", 1)[1]) == images.data_uri_bytes(uri)
