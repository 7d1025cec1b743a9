"""`camp chat`: one answer on stdout (--prompt), or a terminal REPL.
"""

from __future__ import annotations

import sys

from camp.conversation.session import ChatSession, chat
from camp.runtime.errors import CampError
from camp.runtime.i18n import t


# ===================================================================== `camp chat`
def _help() -> str:
    return t("命令：/reset 清空对话  /system 文本 设置系统提示词  /exit 退出（Ctrl-C 停止当前回答；在提示符处按 "
             "Ctrl-D 或 Ctrl-C 退出）",
             "commands: /reset  /system TEXT  /exit  (Ctrl-C stops a reply; Ctrl-D or Ctrl-C at the prompt exits)")


def cli_chat(args) -> int:
    gen = {
        k: getattr(args, k, None)
        for k in ("max_new_tokens", "temperature", "top_p")
        if getattr(args, k, None) is not None
    }
    session = chat(
        args.model or "auto", base_url=args.base_url, api_key=args.api_key, system=args.system, **gen
    )
    out = sys.stdout
    images = getattr(args, "image", None) or None
    if images and args.prompt is None:
        raise CampError("--image goes with --prompt: camp chat MODEL --image FILE --prompt \"…\"")
    if args.prompt is not None:
        # stdout carries the answer only, streamed as it comes
        for piece in session.stream(args.prompt, images):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
        return 0
    return _repl(session, out)


def _repl(session: ChatSession, out) -> int:
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    print(f"{t('camp 对话', 'camp chat')} — {session.backend.describe()}\n{_help()}", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            session.reset()
            print(t("（对话已清空）", "(conversation cleared)"), file=sys.stderr)
            continue
        if text == "/system" or text.startswith("/system "):
            session.system = text[len("/system") :].strip() or None
            session.reset()
            print(t(f"（系统提示词已{'设置' if session.system else '移除'}；对话已清空）",
                    f"(system prompt {'set' if session.system else 'removed'}; conversation cleared)"), file=sys.stderr)
            continue
        if text in ("/help", "/?"):
            print(_help(), file=sys.stderr)
            continue
        stream = session.stream(text)
        try:
            for piece in stream:
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:
            stream.close()
            out.write(t(" [已停止]", " [stopped]"))
        except Exception as exc:  # a failed turn (server gone, out of memory): say so, keep the REPL
            out.flush()
            print(f"\ncamp: {exc}", file=sys.stderr)
        out.write("\n")
        out.flush()
