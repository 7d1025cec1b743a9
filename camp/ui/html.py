"""HTML views of the core's results (JupyterLab shows them): each result's `_repr_html_` delegates here."""

from __future__ import annotations

import html
import io

from camp.serving.bench import COLUMNS
from camp.serving.ports import LOCAL_HOSTS, SSH_HINT
from camp.training.plan import PARTS


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.1f}"
    return "-" if v is None else html.escape(str(v))


def endpoint_html(ep) -> str:
    state = ep.job.status if ep.job is not None else "external"
    key = repr(ep.api_key) if ep.api_key else '"EMPTY"'
    code = (f"from openai import OpenAI\nclient = OpenAI(base_url={ep.base_url!r}, api_key={key})\n"
            f"client.chat.completions.create(model={ep.model!r},\n"
            "    messages=[{'role': 'user', 'content': '你好'}], max_tokens=256)")
    rows = [("base_url", ep.base_url), ("model", ep.model), ("engine", ep.engine), ("state", state),
            ("API key", "required" if ep.api_key else "none")]
    if ep.plan:
        rows.append(("plan", f"tp={ep.plan.tp}, --cache-max-entry-count {ep.plan.cache_max_entry_count:g}, "
                             f"--quant-policy {ep.plan.quant_policy}, {ep.plan.model_format} weights"))
    if ep.log_path:
        rows.append(("log", str(ep.log_path)))
    table = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td><code>{html.escape(str(v))}</code></td></tr>"
                    for k, v in rows)
    hint = ""
    if ep.host in LOCAL_HOSTS and ep.port:
        hint = (f"<small>From your own computer: <code>{html.escape(SSH_HINT.format(port=ep.port))}</code>"
                "</small>")
    return (f"<div><b>camp endpoint</b><table>{table}</table><pre>{html.escape(code)}</pre>{hint}"
            "<br><small><code>.chat(text)</code> · <code>.chat(text, stream=True)</code> · "
            "<code>.session()</code> · <code>.widget()</code> · <code>.stop()</code></small></div>")


def doctor_html(report) -> str:
    from camp.runtime.doctor import _summary
    from camp.runtime.i18n import t

    colours = {"ok": "#1a7f37", "info": "#57606a", "warn": "#9a6700", "fail": "#cf222e"}
    rows = []
    for c in report.checks:
        badge = (f'<span style="background:{colours[c.status]};color:#fff;border-radius:4px;'
                 f'padding:1px 6px;font-size:85%">{c.status}</span>')
        fix = f'<div style="color:#57606a">→ {_code(c.fix)}</div>' if c.fix and c.status in ("warn", "fail") else ""
        rows.append(f"<tr><td>{badge}</td><td><b>{html.escape(c.name)}</b></td>"
                    f"<td style='text-align:left'>{_code(c.value)}{fix}</td></tr>")
    return (f"<div><b>camp doctor</b> — {t('配置档', 'profile')} <code>{html.escape(report.profile)}</code>，"
            f"{html.escape(_summary(len(report.problems)))} "
            f"<span style='color:#57606a'>({report.seconds:.1f} {t('秒', 's')})</span>"
            "<table style='border-collapse:collapse'>" + "".join(rows) + "</table></div>")


def _code(text: str) -> str:
    """A hint for JupyterLab: `command` becomes <code>command</code> instead of showing the backticks."""
    parts = html.escape(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text without any
        return html.escape(text.replace("`", ""))
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def eval_html(result) -> str:
    import base64
    import html

    p = result.scores()
    table = p.to_html(float_format=lambda v: f"{v:.1f}") if len(p) else "<p>no scores</p>"
    buf = io.BytesIO()
    result.plot().savefig(buf, format="png", dpi=100)
    img = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f"<div><b>OpenCompass scores</b> ({result.seconds:.0f} s, run folder "
            f"<code>{html.escape(str(result.run_dir))}</code>)<br>{table}"
            f"<img src='data:image/png;base64,{img}'/></div>")


def finetune_html(result) -> str:
    from camp.runtime.i18n import t
    from camp.ui.progress import loss_svg

    e = html.escape
    resumed = ", ".join(map(str, result.resumed_from))
    rows = [(t("注册名", "registered name"),
             f"<code>{e(result.name)}</code> — <code>camp.chat({e(repr(result.name))})</code>" if result.name else "—"),
            (t("基座模型", "base model"), f"{e(result.base)} <small>({e(str(result.base_dir))})</small>"),
            (t("计划", "plan"), e(result.plan.headline()) if hasattr(result.plan, "headline") else "—"),
            (t("迭代次数", "iterations"), f"{result.max_iters}"
             + (t(f"（从 {resumed} 续跑）", f" (resumed from {resumed})") if result.resumed_from else "")
             + (t(" —— 复用了已完成的运行", " — reused a finished run") if result.reused else "")),
            (t("合并后的模型", "merged model"), f"<code>{e(str(result.merged_dir or '—'))}</code>"),
            (t("适配器（adapter）", "adapter"), f"<code>{e(str(result.adapter_dir or '—'))}</code>"),
            (t("配置文件", "config"), f"<code>{e(str(result.config_path))}</code>"),
            (t("用时", "time"), " · ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))]
    table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                    for k, v in rows)
    answers = "".join(f"<li><b>{e(q)}</b> → {e(a)}</li>" for q, a in result.final_answers.items())
    head = t(f"微调完成：{e(result.base)}", f"Fine-tuned {e(result.base)}")
    hook = t("XTuner 训练中最后一次对话检查的回答：", "Last answers of the chat hook:")
    return (f"<div class='camp-finetune-result'><b>{head}</b><table>{table}</table>{loss_svg(result.losses)}"
            + (f"<div class='camp-samples'>{hook}<ul>{answers}</ul></div>" if answers else "") + "</div>")


def plan_html(plan) -> str:
    from camp.runtime.i18n import t

    colors = {"weights": "#4e79a7", "adapters": "#f28e2b", "gradients": "#e15759", "optimizer": "#76b7b2",
              "activations": "#59a14f", "overhead": "#bab0ac"}
    names = {"weights": t("权重", "weights"), "adapters": t("适配器", "adapters"), "gradients": t("梯度", "gradients"),
             "optimizer": t("优化器状态", "optimizer"), "activations": t("激活值", "activations"),
             "overhead": t("进程开销", "overhead")}
    total = plan.memory["total"]
    scale = max(total, plan.budget_gib, 1e-9)
    bar = "".join(
        f'<div title="{names[p]}: {plan.memory[p]:.2f} GiB" style="width:{100 * plan.memory[p] / scale:.2f}%;'
        f'background:{colors[p]};height:100%"></div>' for p in PARTS)
    line = (f'<div style="position:absolute;left:{100 * plan.budget_gib / scale:.2f}%;top:-3px;bottom:-3px;'
            f'border-left:2px dashed #000" title="{t("预算", "budget")}"></div>')
    rows = "".join(
        f'<tr><td><span style="display:inline-block;width:10px;height:10px;background:{colors[p]}"></span> '
        f"{names[p]}</td><td style='text-align:right'>{plan.memory[p]:.2f}</td>"
        f"<td>{html.escape(plan.explain.get(p, ''))}</td></tr>" for p in PARTS)
    verdict = (f"<b style='color:#2a7'>{t('放得下', 'fits')}</b>" if plan.fits
               else f"<b style='color:#c33'>{t('放不下', 'does not fit')}</b>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in plan.notes)
    where = html.escape(plan.profile or plan.device)
    return (f"<div><b>{t(f'微调计划：{html.escape(plan.model)}', f'Fine-tuning plan for {html.escape(plan.model)}')}"
            f"</b> {t('在', 'on')} {where}<br><small>{html.escape(plan.headline())}</small>"
            '<div style="position:relative;display:flex;height:18px;margin:8px 0;border:1px solid #999;'
            f'max-width:640px">{bar}{line}</div>'
            f"<table><tr><th>{t('部分', 'part')}</th><th>GiB</th><th></th></tr>"
            f"{rows}<tr><td><b>{t('合计', 'total')}</b></td><td style='text-align:right'><b>{total:.2f}</b></td>"
            f"<td>{t(f'预算 {plan.budget_gib:.2f} GiB', f'of {plan.budget_gib:.2f} GiB budget')} → {verdict}</td>"
            "</tr></table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


def bench_html(result) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in result.rows)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    errs = "".join(f"<li>concurrency {c}: {html.escape(m)}</li>" for c, m in result.errors)
    return (f"<div><b>bench</b> {html.escape(result.kind)}: <code>{html.escape(result.target)}</code> "
            f"(max_tokens {result.max_tokens}, greedy)<table><tr>{head}</tr>{body}</table>"
            + (f"<ul>{notes}</ul>" if notes else "") + (f"<b>errors</b><ul>{errs}</ul>" if errs else "")
            + "<small><code>.table</code> · <code>.plot()</code></small></div>")


def webdemo_html(demo):
    import html

    return (
        f'<b>camp webdemo</b> ({html.escape(demo.job.status)}): <a href="{demo.url}" target="_blank">{demo.url}</a>'
        f"<pre>{html.escape(demo.hint)}</pre>"
    )
