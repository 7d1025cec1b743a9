"""The course folder a TA grades in: nbgrader's own layout, plus camp's bookkeeping under `.camp/`.

    <course>/
      source/<assignment>/<notebook>.ipynb        the solution versions (nbgrader "source")
      release/<assignment>/<notebook>.ipynb       what students get (solutions stripped, hidden tests removed)
      submitted/<student>/<assignment>/…          what students handed in (camp collect, or nbgrader collect)
      autograded/<student>/<assignment>/…         graded notebooks (nbgrader's format)
      feedback/<student>/<assignment>/….html      nbgrader's feedback pages
      gradebook.db                                nbgrader's gradebook (formgrader reads it too)
      gradebook/<assignment>.csv, .html           camp's report
      .camp/results/<assignment>/<student>.json   one per graded submission: scores, reasons, submission hash
      .camp/grading/…                             per-submission work folders while grading (removed after)

Nothing a submission's code can see lives here: grading binds only the submission's own input files into the
sandbox. Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from camp.runtime import config
from camp.runtime.errors import CampError
from camp.runtime.i18n import t
from camp.runtime.markers import sha256_file as sha256

# Student and assignment ids become folder names and gradebook keys: keep them to safe, portable characters
# (`@` too: JupyterHub user names, which nbgrader's own exchange uses as student ids, may be e-mail addresses).
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MANIFEST = "manifest.json"
FORMAT = "camp-homework-1"


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID.match(value) or value.endswith(".") or ".." in value:
        raise CampError(t(
            f"{what} {value!r} 不合法：只能用字母、数字、`_`、`-`、`.`、`@`，以字母或数字开头，最长 64 个字符",
            f"{what} {value!r} is not valid: use letters, digits, `_`, `-`, `.`, `@`, starting with a letter or digit, "
            f"at most 64 characters"))
    return value


def tree_hash(folder: Path) -> str:
    """One hash over every file's relative path and content (what a result was graded from)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + sha256(f).encode() + b"\n")
    return h.hexdigest()


def default_root() -> Path:
    env = os.environ.get("CAMP_HOMEWORK")
    return Path(env).expanduser() if env else config.home() / "homework"


@dataclass(frozen=True)
class Course:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Course:
        return cls(Path(root).expanduser().absolute() if root else default_root().absolute())

    source = property(lambda self: self.root / "source")
    release_dir = property(lambda self: self.root / "release")
    submitted = property(lambda self: self.root / "submitted")
    autograded = property(lambda self: self.root / "autograded")
    feedback_dir = property(lambda self: self.root / "feedback")
    db = property(lambda self: self.root / "gradebook.db")
    reports = property(lambda self: self.root / "gradebook")
    camp_dir = property(lambda self: self.root / ".camp")

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db}"

    def result_path(self, assignment: str, student: str) -> Path:
        return self.camp_dir / "results" / assignment / f"{student}.json"

    def snapshot_path(self, assignment: str) -> Path:
        """The gradebook as released (no students): each submission is graded against its own copy."""
        return self.camp_dir / "released" / f"{assignment}.db"

    def assignments(self) -> list[str]:
        return sorted(p.name for p in self.release_dir.iterdir() if p.is_dir()) if self.release_dir.is_dir() else []

    def require_released(self, assignment: str) -> None:
        if not (self.release_dir / assignment).is_dir() or not self.snapshot_path(assignment).is_file():
            known = ", ".join(self.assignments()) or t("（没有）", "(none)")
            raise CampError(t(
                f"作业 {assignment!r} 还没有发布到 {self.root}（已发布：{known}）— 先运行 `camp homework release`",
                f"assignment {assignment!r} is not released in {self.root} (released: {known}) — run "
                f"`camp homework release` first"))

    def pick_assignment(self, assignment: str | None) -> str:
        """The assignment named, or the only one released."""
        if assignment:
            check_id(assignment, t("作业名", "assignment"))
            self.require_released(assignment)
            return assignment
        found = self.assignments()
        if len(found) == 1:
            return found[0]
        if not found:
            raise CampError(t(f"{self.root} 里还没有发布的作业 — 先运行 `camp homework release`",
                              f"nothing is released in {self.root} — run `camp homework release` first"))
        raise CampError(t(
            f"{self.root} 里有 {len(found)} 个已发布的作业（{', '.join(found)}）— 请指定一个作业名",
            f"{self.root} has {len(found)} released assignments ({', '.join(found)}) — name one"))

    def submissions(self, assignment: str) -> list[str]:
        """Students with a submission of `assignment`, sorted."""
        if not self.submitted.is_dir():
            return []
        return sorted(p.name for p in self.submitted.iterdir()
                      if (p / assignment).is_dir() and ID.match(p.name))

    def nbgrader_config(self):
        """traitlets Config pointing nbgrader at this course (never at a nbgrader_config.py elsewhere)."""
        from traitlets.config import Config

        c = Config()
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.db_url = self.db_url
        return c
