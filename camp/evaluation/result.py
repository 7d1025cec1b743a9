"""The result of an evaluation: the score table, the answers behind each score, a chart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from camp.runtime.errors import CampError


@dataclass
class EvalResult:
    table: object  # pandas DataFrame: model, dataset, metric, score
    run_dir: Path
    config_path: Path
    summary_csv: Path | None
    predictions: dict  # {model: {dataset: Path}}
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    _parts: dict = field(default_factory=dict, repr=False)  # {model: {dataset: [files]}}

    # -------------------------------------------------------------- reading
    def scores(self):
        """The table pivoted for reading: one row per dataset/metric, one column per model."""
        t = self.table.dropna(subset=["score"]) if len(self.table) else self.table
        if not len(t):
            return t
        p = t.pivot_table(index=["dataset", "metric"], columns="model", values="score", sort=False)
        cols = [m for m in self.models if m in p.columns] + [m for m in p.columns if m not in self.models]
        return p[cols]

    def score(self, model: str, dataset: str, metric: str | None = None) -> float:
        """One number (0–100), e.g. r.score("tiny", "self_cognition_check")."""
        t = self.table
        sel = t[(t["model"] == model) & (t["dataset"] == dataset)]
        if metric:
            sel = sel[sel["metric"] == metric]
        if sel.empty:
            raise CampError(f"no score for model {model!r} on {dataset!r}" + (f" ({metric})" if metric else "") +
                            f" — models: {', '.join(self.models)}; datasets: {', '.join(sorted(set(t['dataset'])))}")
        return float(sel["score"].iloc[0])

    def answers(self, model: str, dataset: str) -> list[dict]:
        """What the model said: [{"prompt", "prediction", "gold"}] in question order."""
        files = self._parts.get(model, {}).get(dataset)
        if not files:
            raise CampError(f"no predictions for {model!r} on {dataset!r} in {self.run_dir}")
        out = []
        for f in files:
            data = json.loads(Path(f).read_text(encoding="utf-8"))
            for k in sorted(data, key=lambda x: int(x) if str(x).isdigit() else 0):
                item = data[k]
                prompt = item.get("origin_prompt")
                if isinstance(prompt, list):  # chat turns: the last human turn is the question
                    prompt = "\n".join(str(t.get("prompt", "")) for t in prompt if isinstance(t, dict))
                out.append({"prompt": prompt, "prediction": item.get("prediction"), "gold": item.get("gold")})
        return out

    # -------------------------------------------------------------- showing
    def plot(self, ax=None, title: str | None = None):
        from camp.ui.plots import eval_bars

        return eval_bars(self, ax=ax, title=title)

    def to_dict(self) -> dict:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.table.to_dict(orient="records")]
        return {
            "models": self.models,
            "datasets": self.datasets,
            "scores": rows,
            "run_dir": str(self.run_dir),
            "config": str(self.config_path),
            "summary_csv": str(self.summary_csv) if self.summary_csv else None,
            "predictions": {m: {d: str(p) for d, p in ds.items()} for m, ds in self.predictions.items()},
            "seconds": round(self.seconds, 1),
            "settings": self.settings,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def _repr_html_(self) -> str:
        from camp.ui.html import eval_html

        return eval_html(self)

    def __repr__(self) -> str:
        p = self.scores()
        body = p.to_string(float_format=lambda v: f"{v:.1f}") if len(p) else "(no scores)"
        return f"EvalResult({', '.join(self.models)}; run_dir={self.run_dir})\n{body}"


