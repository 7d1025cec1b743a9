"""tests/ui: a screenshot of the page when a browser test fails (next to the others in the run folder)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.camp_failed = rep.failed
    return rep


@pytest.fixture(autouse=True)
def screenshot_on_failure(request):
    yield
    if getattr(request.node, "camp_failed", False) and "page" in request.fixturenames:
        page, shots = request.getfixturevalue("page"), request.getfixturevalue("shots")
        try:
            page.screenshot(path=str(shots / f"{request.node.name}-failed.png"), full_page=True)
        except Exception as exc:  # the page itself may be what broke
            print(f"no failure screenshot: {exc}")
