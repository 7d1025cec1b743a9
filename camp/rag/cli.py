"""`camp rag build | search | ask | serve`."""

from __future__ import annotations

import json
import time

from camp.runtime.i18n import t


def cli_build(args) -> int:
    from camp.rag.chunking import DEFAULT_SIZE
    from camp.rag.kb import build

    kb = build(args.sources, name=args.name, chunk_size=args.chunk_size or DEFAULT_SIZE, rebuild=args.rebuild)
    ch = kb.changes
    print(t(f"知识库 {kb.name}：{len(kb.files)} 个文件，{len(kb)} 个段落（{kb.embedding}）→ {kb.folder}",
            f"knowledge base {kb.name}: {len(kb.files)} files, {len(kb)} passages ({kb.embedding}) → {kb.folder}"))
    for key in ("added", "updated", "removed"):
        for name in ch.get(key, []):
            print(f"  {key}: {name}")
    for s in kb.skipped:
        print(t(f"  跳过: {s}", f"  skipped: {s}"))
    return 0


def cli_search(args) -> int:
    from camp.rag.kb import load

    hits = load(args.name).search(" ".join(args.query), k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return 0
    for h in hits:
        print(f"[{h.rank}] {h.where}  ({args.mode} {h.score:.3f})")
        print("    " + h.text.replace("\n", "\n    ")[:600])
    if not hits:
        print(t("没有找到相关段落", "no passage matches"))
    return 0


def cli_ask(args) -> int:
    from camp.rag.kb import load

    ans = load(args.name).ask(" ".join(args.question), model=args.model, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(ans.with_sources())
    return 0


def cli_serve(args) -> int:
    from camp.rag.endpoint import serve

    ep = serve(args.name, args.model, port=args.port, host=args.host, api_key=args.api_key, k=args.k)
    key = f" --api-key {ep.api_key}" if ep.api_key else ""
    print(t(f"camp rag serve: {ep.base_url}  模型: {ep.model}", f"camp rag serve: {ep.base_url}  model: {ep.model}"))
    print(t(f"对话: camp chat --base-url {ep.base_url}{key} {ep.model}",
            f"chat: camp chat --base-url {ep.base_url}{key} {ep.model}"))
    try:  # the line that says Ctrl-C is printed inside: a Ctrl-C right after it (while print returns) stops cleanly
        print(t(f"日志: {ep.log_path} —— 按 Ctrl-C 停止服务", f"log: {ep.log_path} — Ctrl-C stops the server"),
              flush=True)
        while not ep.job.done:
            time.sleep(0.5)
    except KeyboardInterrupt:
        ep.stop()
        print(t("\ncamp rag serve: 已停止", "\ncamp rag serve: stopped"))
        return 0
    print(t(f"camp rag serve: 服务已退出（{ep.job.status}）；日志: {ep.log_path}",
            f"camp rag serve: the server stopped ({ep.job.status}); log: {ep.log_path}"))
    return 1
