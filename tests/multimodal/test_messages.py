"""Image turns in a ChatSession, their OpenAI form, and the server's checks — no model needed."""

from __future__ import annotations

import base64

import pytest

from camp.conversation.session import ChatSession
from camp.multimodal import images, messages, scenes, serving
from camp.runtime.errors import CampError


class FakeBackend:
    kind = "transformers"

    def __init__(self, vision):
        self.vision, self.seen, self.last_stats = vision, [], {}

    def describe(self):
        return "fake"

    @property
    def name(self):
        return "fake"

    def stream(self, msgs, gen):
        self.seen.append(msgs)
        yield "红色"


@pytest.fixture()
def pic():
    return scenes.scenes(1, seed=8)[0].pil()


def test_an_image_turn_is_kept_in_the_history(pic):
    s = ChatSession(FakeBackend(vision=True))
    assert s.ask("左边的方块是什么颜色？", image=pic) == "红色"
    turn = s.history[0]["content"]
    assert [p["type"] for p in turn] == ["image", "text"] and turn[1]["text"] == "左边的方块是什么颜色？"
    assert s.ask("还有呢？") == "红色"  # a later turn without a picture is plain text
    assert s.history[2] == {"role": "user", "content": "还有呢？"}
    assert "[image]" in s._repr_markdown_()


def test_text_only_models_refuse_pictures_and_record_nothing(pic):
    s = ChatSession(FakeBackend(vision=False))
    with pytest.raises(CampError, match="text-only model and cannot see images"):
        s.ask("hi", image=pic)
    assert s.history == []


def test_a_bad_picture_fails_before_anything_is_sent():
    backend = FakeBackend(vision=True)
    s = ChatSession(backend)
    with pytest.raises(images.ImageError, match="not an image"):
        s.ask("hi", image=b"definitely not a png")
    assert backend.seen == [] and s.history == []


def test_openai_form_and_template_form(pic):
    msgs = [messages.user_message("hi", [pic, pic])]
    wire = messages.to_openai(msgs)[0]["content"]
    assert [p["type"] for p in wire] == ["image_url", "image_url", "text"]
    assert wire[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert messages.for_template(msgs)[0]["content"][0] == {"type": "image"}
    assert len(messages.images_of(messages.to_openai(msgs))) == 2
    assert messages.text_of(msgs[0]["content"]) == "[image] [image] hi"


def _request(url):
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}]}]}


def test_server_checks(pic):
    good = images.to_data_uri(pic)
    assert serving.check_request(_request(good), True, "tiny-vl") is None
    assert serving.check_request({"messages": [{"role": "user", "content": "hi"}]}, False, "tiny") is None
    assert "text-only" in serving.check_request(_request(good), False, "tiny")
    assert "not an image" in serving.check_request(
        _request("data:image/png;base64," + base64.b64encode(b"text").decode()), True, "tiny-vl")
    assert "data:image" in serving.check_request(_request("https://example.com/a.png"), True, "tiny-vl")
    png = images.to_png_bytes(pic.resize((300, 300)))
    cut = "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode()
    assert "truncated" in serving.check_request(_request(cut), True, "tiny-vl")
