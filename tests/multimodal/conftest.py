"""The multimodal tests read camp's English messages."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    monkeypatch.setenv("CAMP_LANG", "en")
