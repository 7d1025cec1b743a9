"""The result of an evaluation: the score table, the answers behind each score, a chart.
"""

from __future__ import annotations

import io
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

    def commands(self):
        """The OpenCompass command line this evaluation ran, and the same as the `opencompass` CLI to type by hand
        in the opencompass env (`camp env run opencompass -- opencompass config.py -w outputs …`)."""
        from camp.runtime.toolcmd import Commands, read_job

        c = read_job(self.run_dir, "eval")
        if c is None:
            return Commands()
        args = [str(a) for a in c.argv]
        if "-m" in args and args[args.index("-m") + 1:args.index("-m") + 2] == ["opencompass.cli.main"]:
            c.tool_argv = ["opencompass", *args[args.index("-m") + 2:]]  # the package's console script
        return Commands([c])

    # -------------------------------------------------------------- showing
    def plot(self, ax=None, title: str | None = None):
        """Grouped bar chart: one group per dataset (and metric), one bar per model. Returns the Figure."""
        p = self.scores()
        if ax is None:
            from matplotlib.figure import Figure  # no pyplot: the figure shows once, as the returned value

            fig = Figure(figsize=(max(4.5, 1.6 * max(len(p), 1) * max(1, len(p.columns)) ** 0.5 + 2), 3.4))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        if len(p):
            labels = [d if len({m for _, m in p.index}) == 1 else f"{d}\n{m}" for d, m in p.index]
            n = len(p.columns)
            width = 0.8 / max(n, 1)
            for i, model in enumerate(p.columns):
                xs = [j + (i - (n - 1) / 2) * width for j in range(len(p))]
                bars = ax.bar(xs, p[model].tolist(), width, label=str(model))
                ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
            ax.set_xticks(range(len(p)), labels)
            legend = ax.legend(fontsize=8, loc="upper right" if n < 4 else "best")
            font = _cjk_font() if any(not str(x).isascii() for x in [*labels, *p.columns]) else None
            if font:  # Chinese model/dataset names: a font that has the glyphs, when this machine has one
                for t in [*ax.get_xticklabels(), *legend.get_texts()]:
                    t.set_fontfamily([font, "DejaVu Sans"])
        ax.set_ylim(0, 110)
        ax.set_ylabel("score (0–100)")
        ax.set_title(title or "OpenCompass: " + ", ".join(self.models))
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return fig

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
        import base64
        import html

        p = self.scores()
        table = p.to_html(float_format=lambda v: f"{v:.1f}") if len(p) else "<p>no scores</p>"
        buf = io.BytesIO()
        self.plot().savefig(buf, format="png", dpi=100)
        img = base64.b64encode(buf.getvalue()).decode("ascii")
        return (f"<div><b>OpenCompass scores</b> ({self.seconds:.0f} s, run folder "
                f"<code>{html.escape(str(self.run_dir))}</code>)<br>{table}"
                f"<img src='data:image/png;base64,{img}'/></div>")

    def __repr__(self) -> str:
        p = self.scores()
        body = p.to_string(float_format=lambda v: f"{v:.1f}") if len(p) else "(no scores)"
        return f"EvalResult({', '.join(self.models)}; run_dir={self.run_dir})\n{body}"


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("CJK", "WenQuanYi", "Noto Sans SC", "SimHei", "YaHei", "PingFang",
                                      "Source Han", "Heiti", "SimSun")):
            return f.name
    return None
