"""Retrieval evaluation: hit@k and MRR of dense, BM25 and hybrid retrieval on a QA set.

    report = camp.rag.evaluate_retrieval(kb)            # the course QA set: assets/rag/course_qa.jsonl
    report.table                                        # mode × (hit@1, hit@3, hit@5, MRR), per language group too
    report.plot()                                       # the bar chart (camp.ui)

A question is answered by a passage when the passage comes from the expected file and contains the evidence string
(case-insensitive; without an evidence string, the file is enough). hit@k: the share of questions with such a
passage among the first k; MRR: the mean of 1/rank of the first one (0 when it is not in the first `depth`).
The course set has Chinese, English and cross-lingual questions (an English question whose answer is only written in
Chinese, and the other way round) — where BM25, which needs the same words, cannot follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from camp.rag import index as ix
from camp.runtime import config
from camp.runtime.errors import CampError

KS = (1, 3, 5)
DEPTH = 10


def course_qa_path() -> Path:
    return config.assets_dir() / "rag" / "course_qa.jsonl"


def load_qa(path=None) -> list[dict]:
    """A QA set: .jsonl rows {"question", "source", "evidence"?, "lang"?, "id"?}."""
    path = Path(path) if path else course_qa_path()
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise CampError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not row.get("question") or not row.get("source"):
            raise CampError(f"{path}:{n}: a QA row needs a question and the source file that answers it")
        rows.append(row)
    if not rows:
        raise CampError(f"{path} holds no questions")
    return rows


def relevant(passage, row: dict) -> bool:
    src = Path(passage.source).name
    if src != Path(row["source"]).name:
        return False
    ev = row.get("evidence")
    return not ev or ev.lower() in passage.text.lower()


@dataclass
class RetrievalReport:
    """`table`: one row per mode (and language group) with hit@k and MRR; `rows`: every question's first relevant
    rank per mode (0 = not found)."""

    table: object  # pandas DataFrame
    rows: object
    kb_name: str
    n: int

    def to_dict(self) -> dict:
        return {"kb": self.kb_name, "questions": self.n, "table": self.table.to_dict(orient="records")}

    def score(self, mode: str, metric: str = "hit@3", group: str = "all") -> float:
        t = self.table
        sel = t[(t["mode"] == mode) & (t["questions"] == group)]
        if sel.empty:
            raise CampError(f"no {mode}/{group} row in the report")
        return float(sel[metric].iloc[0])

    def plot(self, ax=None):
        from camp.ui.rag_view import plot_retrieval

        return plot_retrieval(self, ax=ax)

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False, float_format=lambda x: f"{x:.2f}")


def evaluate_retrieval(kb, qa=None, *, modes=ix.MODES, ks=KS, depth: int = DEPTH) -> RetrievalReport:
    """hit@k and MRR of each mode on the QA set `qa` (a path, a list of rows, or None: the course set)."""
    import pandas as pd

    rows_in = qa if isinstance(qa, list) else load_qa(qa)
    modes = [ix.check_mode(m) for m in modes]
    depth = max(depth, *ks)
    pool = max(depth, ix.HYBRID_DEPTH)
    per = []
    for row in rows_in:
        ranks = kb.rankings(row["question"], pool)
        fused = ix.fuse([ranks["dense"], ranks["bm25"]], depth)
        out = {"id": row.get("id", ""), "lang": row.get("lang", ""), "question": row["question"]}
        for m in modes:
            ranking = fused if m == "hybrid" else ranks[m]
            first = 0
            for r, (i, _) in enumerate(ranking[:depth], 1):
                if relevant(kb.passage(i), row):
                    first = r
                    break
            out[m] = first
        per.append(out)
    df = pd.DataFrame(per)
    groups = [("all", df)] + [(g, df[df["lang"] == g]) for g in ("zh", "en", "cross") if (df["lang"] == g).any()]
    table = []
    for m in modes:
        for g, sub in groups:
            r = sub[m]
            line = {"mode": m, "questions": g, "n": len(sub)}
            for k in ks:
                line[f"hit@{k}"] = float(((r > 0) & (r <= k)).mean())
            line["MRR"] = float((r.where(r > 0, float("inf")).rdiv(1.0)).mean())
            table.append(line)
    return RetrievalReport(pd.DataFrame(table), df, kb.name, len(df))
