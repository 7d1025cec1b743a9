"""Chinese first, English on request: the language of every word camp shows a student (widgets, web demo, CLI).

    from camp.runtime.i18n import t
    t("发送", "Send")            # "发送", or "Send" with CAMP_LANG=en (or an English locale and no CAMP_LANG)

CAMP_LANG (zh | en) decides; without it, a locale that starts with "en" (LC_ALL, LC_MESSAGES, LANG) means English;
anything else — zh_CN, C, POSIX, unset — Chinese.
"""

from __future__ import annotations

import os

LANGS = ("zh", "en")


def lang() -> str:
    chosen = os.environ.get("CAMP_LANG", "").strip().lower()
    if chosen:
        return "en" if chosen.startswith("en") else "zh"
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "en" if value.lower().startswith("en") else "zh"
    return "zh"


def t(zh: str, en: str) -> str:
    """The text in the student's language."""
    return en if lang() == "en" else zh


def width(text: str) -> int:
    """Columns `text` takes in a terminal: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def pad(text: str, columns: int, right: bool = False) -> str:
    """`text` padded with spaces to `columns` terminal columns (str.ljust/rjust count a CJK character as one)."""
    fill = " " * max(0, columns - width(text))
    return fill + text if right else text + fill
