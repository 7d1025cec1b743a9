"""A JupyterLab view of an agent run: each step appears as it happens — thoughts collapsed, tool calls,
observations (collapsible), the final answer highlighted, errors in red.

The run happens in a worker thread (as in chat_widget): ipykernel publishes widget updates made from any
thread, so the steps show live and the kernel stays free. `ask(q, wait=True)` (the default in code) blocks until
the answer, which is what notebooks executed by papermill need.
"""

from __future__ import annotations

import html
import json
import threading

from camp.runtime.i18n import t

_STYLE = {
    "question": "margin:4px 0;padding:6px 10px;border-radius:8px;background:#dbeafe;white-space:pre-wrap;",
    "thought": "margin:2px 0;padding:2px 10px;color:#475569;",
    "action": "margin:2px 0;padding:4px 10px;border-left:3px solid #f59e0b;background:#fffbeb;"
    "font-family:monospace;white-space:pre-wrap;",
    "observation": "margin:2px 0;padding:2px 10px;border-left:3px solid #10b981;background:#ecfdf5;",
    "answer": "margin:6px 0;padding:6px 10px;border-radius:8px;background:#dcfce7;font-weight:600;"
    "white-space:pre-wrap;",
    "error": "margin:2px 0;padding:4px 10px;border-radius:6px;background:#fee2e2;color:#991b1b;white-space:pre-wrap;",
}


def step_html(step) -> str:
    """One Step as HTML (details/summary makes thoughts and observations collapsible without JS)."""
    kind, text = step.kind, html.escape(step.text or "")
    style = _STYLE.get(kind, _STYLE["thought"])
    if kind == "thought":
        first = text.splitlines()[0][:80] if text else ""
        return (f'<details class="camp-agent-thought" style="{style}"><summary>💭 {t("思考", "Thought")}: {first}…</summary>'
                f'<div style="white-space:pre-wrap">{text}</div></details>')
    if kind == "action":
        args = json.dumps(step.args, ensure_ascii=False) if isinstance(step.args, dict) else (step.text or "")
        return (f'<div class="camp-agent-action" style="{style}">🔧 {html.escape(step.tool or "?")}'
                f"({html.escape(args)})</div>")
    if kind == "observation":
        return (f'<details open class="camp-agent-observation" style="{style}"><summary>👁 {t("观察", "Observation")}'
                f'{t("（来自 ", " from ") + html.escape(step.tool) + t("）", "") if step.tool else ""}</summary>'
                f'<pre style="white-space:pre-wrap;margin:2px 0">{text}</pre></details>')
    if kind == "answer":
        return f'<div class="camp-agent-answer" style="{style}">✅ {text}</div>'
    tool = f" [{html.escape(step.tool)}]" if step.tool else ""
    return f'<div class="camp-agent-error" style="{style}">⚠ {text}{tool}</div>'


class AgentWidget:
    """`AgentWidget(agent)` (or `agent.widget()`): a question box and the live step view.
    `ask(q)` runs the agent; `steps` / `reply` hold what was shown."""

    def __init__(self, agent):
        import ipywidgets as w

        self.agent = agent
        self.steps: list = []
        self.reply = None
        self.last_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        names = ", ".join(t.name for t in agent.tools)
        self.title = w.HTML(f"<b>{t('camp 智能体', 'camp agent')}</b> — {html.escape(agent.endpoint.model)} · "
                            f"{t('工具', 'tools')}: {html.escape(names)}")
        self.log = w.VBox(layout=w.Layout(border="1px solid #cbd5e1", padding="6px"))
        self.input = w.Text(placeholder=t("向智能体提问，按回车发送", "Ask the agent and press Enter"), layout=w.Layout(flex="1"))
        self.button = w.Button(description=t("提问", "Ask"), button_style="primary", icon="play")
        self.status = w.HTML("")
        self.input.on_msg(self._on_input_msg)
        self.button.on_click(lambda _b: self.ask(wait=False))
        self.box = w.VBox([self.title, self.log, w.HBox([self.input, self.button]), self.status])

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<AgentWidget {self.agent!r}, {len(self.steps)} step(s)>"

    def _on_input_msg(self, _widget, content, _buffers):
        if isinstance(content, dict) and content.get("event") == "submit":
            self.ask(wait=False)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _append(self, html_text: str) -> None:
        import ipywidgets as w

        self.log.children = (*self.log.children, w.HTML(html_text))

    def add_step(self, step) -> None:
        self.steps.append(step)
        self._append(step_html(step))

    def ask(self, question: str | None = None, *, wait: bool = True):
        """Run the agent on `question` (default: the input box), steps appearing live. Returns the AgentReply
        when wait=True."""
        from camp.agents.react import AgentReply, Step

        question = (self.input.value if question is None else question).strip()
        if not question or self.busy:
            return None
        self.input.value = ""
        self._append(f'<div style="{_STYLE["question"]}">{html.escape(question)}</div>')
        self.status.value = f"<i>{t('正在思考…', 'working…')}</i>"
        self.button.disabled = True
        start = len(self.steps)

        def work():
            try:
                for step in self.agent.run_stream(question):
                    self.add_step(step)
            except Exception as exc:  # shown in the view; the kernel keeps going
                self.last_error = exc
                self.add_step(Step("error", str(exc)))
            finally:
                mine = self.steps[start:]
                answers = [s.text for s in mine if s.kind == "answer"]
                self.reply = AgentReply(answers[-1] if answers else "", mine)
                self.status.value = ""
                self.button.disabled = False

        self._thread = threading.Thread(target=work, daemon=True, name="camp-agent-widget")
        self._thread.start()
        if wait:
            self._thread.join()
            return self.reply
        return None

    def wait(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)
        return self.reply
