"""Errors a student can act on. The CLI prints them as one line (no traceback) and exits non-zero."""


class CampError(Exception):
    """Names the problem and the fix. Exit status 1 unless a subclass says otherwise."""

    code = 1
