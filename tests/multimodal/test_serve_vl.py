"""Serving with images: tiny-vl behind `transformers serve` answers image_url parts through the openai SDK
exactly as it does in-process, plain and streaming; bad pictures are a 400 and the server keeps serving."""

from __future__ import annotations

import base64

import pytest

import camp
from camp.multimodal import images, scenes, score
from camp.serving.client import Client

pytestmark = pytest.mark.integration


def _port() -> int:
    """A free port away from 23333, where every server on a shared machine starts looking."""
    import random

    from camp.serving.ports import free_port

    return free_port("127.0.0.1", random.randint(30000, 60000))


@pytest.fixture(scope="module")
def endpoint():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAMP_LANG", "en")  # the server's messages, in the language the asserts read
        ep = camp.serve("tiny-vl", port=_port())
    yield ep
    ep.stop()


def _ask(client, model, url, question, stream=False, max_tokens=32):
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": question}]}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=max_tokens, temperature=0,
                                       stream=stream)
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in r if c.choices)
    return r.choices[0].message.content


def test_served_answers_equal_in_process(endpoint):
    client = Client(endpoint.base_url, endpoint.model).openai
    local = camp.chat("tiny-vl", max_new_tokens=32, temperature=0)
    for sc in scenes.scenes(4, seed=515):
        url = images.to_data_uri(sc.pil())
        for question, _answer in scenes.colour_questions(sc)[::2]:
            local.reset()
            here = local.ask(question, image=sc.pil())
            assert _ask(client, endpoint.model, url, question) == here
            assert _ask(client, endpoint.model, url, question, stream=True) == here
    # and the held-out score through the endpoint (camp.chat over base_url) matches
    examples = score.held_out(6, seed=99, task="colour")
    assert score.score(endpoint.model, examples, base_url=endpoint.base_url).accuracy == \
        score.score("tiny-vl", examples).accuracy


def test_bad_pictures_are_refused_and_the_server_keeps_serving(endpoint):
    import openai

    client = Client(endpoint.base_url, endpoint.model).openai
    pic = scenes.scenes(1, seed=1)[0].pil()
    png = images.to_png_bytes(pic.resize((300, 300)))
    from PIL import Image

    big = Image.new("L", (8660, 5774))
    import io

    buf = io.BytesIO()
    big.save(buf, format="PNG")
    bad = {"not an image": "data:image/png;base64," + base64.b64encode(b"plain text").decode(),
           "truncated": "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode(),
           "25 megapixels": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
           "data:image": "https://example.com/cat.png"}
    for why, url in bad.items():
        with pytest.raises(openai.BadRequestError, match=why):
            _ask(client, endpoint.model, url, "hi")
    assert _ask(client, endpoint.model, images.to_data_uri(pic), "左边的方块是什么颜色？") in \
        {c[0] for c in scenes.COLOURS}
    assert endpoint.healthy()


def test_a_text_only_server_refuses_pictures():
    import openai

    ep = camp.serve("tiny", port=_port())
    try:
        client = Client(ep.base_url, ep.model).openai
        with pytest.raises(openai.BadRequestError, match="text-only"):
            _ask(client, ep.model, images.to_data_uri(scenes.scenes(1, seed=1)[0].pil()), "hi")
        assert client.chat.completions.create(model=ep.model, messages=[{"role": "user", "content": "你是谁？"}],
                                              max_tokens=8).choices[0].message.content
    finally:
        ep.stop()


def test_bench_sends_image_requests(endpoint):
    pics = [sc.pil() for sc in scenes.scenes(2, seed=3)]
    r = camp.bench(endpoint, concurrency=(1,), requests=4, max_tokens=8, prompts=["描述这张图片。"], images=pics)
    assert r.rows[0]["errors"] == 0 and r.rows[0]["requests"] == 4
