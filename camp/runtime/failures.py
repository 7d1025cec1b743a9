"""One line that says why a tool failed, from its output: a known pattern's explanation, else the error line of a
Python traceback, else the last line that looks like an error. Stages add their own patterns (`hints`: regex →
text, `{0}` filled from the regex's first group); the log path always goes with it (camp.runtime.stage)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# `ValueError: …`, `torch.OutOfMemoryError: …`, `KeyboardInterrupt` — the last line of a Python traceback
ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b(?::.*)?$")
TRACEBACK = "Traceback (most recent call last)"
_ERRORISH = re.compile(r"\b(?:error|failed|fatal|cannot|can't|could not|no such file|not found|killed)\b", re.I)

# Patterns that mean the same thing in every tool.
COMMON_HINTS: list[tuple[str, str]] = [
    (r"CUDA out of memory|OutOfMemoryError|out of memory", "out of GPU memory: a smaller batch, a shorter "
     "max_length, QLoRA, or a bigger profile (the plan says what fits)"),
    (r"No space left on device", "the disk is full: free space (old runs are in $CAMP_HOME/runs)"),
    (r"No module named '?([\w.]+)", "a package is missing in the tool's environment: {0} — recreate it with "
     "`camp env create NAME --force`"),
    (r"Killed$|exit status -9|signal 9", "the process was killed (often: the machine ran out of RAM)"),
]


def traceback_error(lines: Iterable[str]) -> str | None:
    """The error line of the last Python traceback in `lines` (tools print a Traceback and may still exit 0)."""
    seen, error = False, None
    for line in lines:
        s = line.strip()
        if s.startswith(TRACEBACK):
            seen, error = True, None
        elif seen and ERROR_LINE.match(s):
            error = s
    return error


def has_traceback(lines: Iterable[str]) -> bool:
    return any(line.lstrip().startswith(TRACEBACK) for line in lines)


def hint(lines: Sequence[str], hints: Sequence[tuple[str, str]] = ()) -> str | None:
    """The explanation of the first pattern (stage's own first, then COMMON_HINTS) found in `lines`."""
    text = "\n".join(lines)
    for pattern, template in [*hints, *COMMON_HINTS]:
        m = re.search(pattern, text, re.M)
        if m:
            return template.format(*m.groups())
    return None


def explain(lines: Sequence[str], hints: Sequence[tuple[str, str]] = ()) -> str | None:
    """One line: the known cause, plus the traceback's error line when there is one (or the last error-ish line)."""
    cause = hint(lines, hints)
    error = traceback_error(lines)
    if error is None:
        error = next((ln.strip() for ln in reversed(lines)
                      if (ERROR_LINE.match(ln.strip()) or _ERRORISH.search(ln)) and len(ln) < 400), None)
    if cause and error:
        return f"{cause} ({error[:200]})"
    return cause or (error[:300] if error else None)
