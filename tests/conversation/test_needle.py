"""Needle in a haystack: the needle sits where it was asked to, and the probe asks every (length, depth)."""

from __future__ import annotations

import pytest

from camp.conversation import needle


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_the_needle_is_at_its_depth_in_a_haystack_of_its_length(depth):
    text = needle.haystack(3000, depth, "4711")
    sentence = needle.NEEDLE.format(code="4711")
    assert text.count(sentence) == 1
    assert 3000 <= len(text) - len(sentence) <= 3000
    at = text.index(sentence) / (len(text) - len(sentence))
    assert abs(at - depth) < 0.05, at  # moved at most to the next sentence end
    if 0 < depth < 1:
        assert text[text.index(sentence) - 1] in "。！？\n"  # not inside a sentence


def test_the_tiny_haystack_is_a_row_of_words_in_tiny_s_trained_format():
    text = needle.tiny_haystack(8, 0.5, "4711", seed=3)
    row, question = text.split("\n")
    words = row.split(" ")
    assert len(words) == 9 and words[4] == "4711"
    assert not any(c.isdigit() for w in words if w != "4711" for c in w)
    assert "\n" + question == needle.TINY_QUESTION


@pytest.mark.integration
def test_probe_on_tiny_asks_every_cell_and_says_it_is_the_tiny_demo():
    r = needle.probe("tiny", profile="cpu-tiny", lengths=(4, 32), depths=(0.0, 0.5, 1.0), show=False)
    assert r.kind == "tiny" and r.unit == "words"
    assert [(x["length"], x["depth"]) for x in r.rows] == [(n, d) for n in (4, 32) for d in (0.0, 0.5, 1.0)]
    assert all(x["found"] <= (x["code"] in x["answer"]) for x in r.rows)
    assert r.grid().shape == (3, 2)
    assert "tiny" in r.plot()._repr_svg_()
