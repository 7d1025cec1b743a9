"""A lesson's model: the catalogue's per-lesson default on GPU profiles, the profile's default elsewhere."""

from __future__ import annotations

import camp
from camp.models import lesson_model


def test_the_chat_demo_is_internlm2_chat_1_8b_on_every_gpu_profile():
    for profile in ("gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g", "gpu-80g-x2"):
        assert lesson_model("chat_demo", "auto", profile) == "internlm2-chat-1_8b"
        assert lesson_model("02_chat_demo", "auto", profile) == "internlm2-chat-1_8b"
    assert lesson_model("chat_demo", "auto", "cpu-tiny") == "tiny"


def test_other_lessons_and_explicit_models_are_left_alone():
    assert lesson_model("finetune_xtuner", "auto", "gpu-24g") == camp.profile("gpu-24g").default_model
    assert lesson_model("chat_demo", "internlm2_5-7b-chat", "gpu-80g") == "internlm2_5-7b-chat"
    assert camp.models.get(lesson_model("chat_demo", "auto", "gpu-8g")).memory_gb["chat"] <= 8
