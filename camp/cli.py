"""The `camp` command. Parsing only: each subcommand is a `cli_*` function in the module that owns it,
imported when the subcommand runs, so `camp --help` and `camp doctor` start fast."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from camp.runtime.errors import CampError


def _handler(target: str):
    mod, func = target.split(":")

    def run(args):
        return getattr(importlib.import_module(mod), func)(args)

    return run


def _doctor(sub) -> None:
    d = sub.add_parser("doctor", help="this machine: Python, torch, GPUs, profile, environments, network, disk")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=_handler("camp.runtime.doctor:cli_doctor"))


def _models(sub) -> None:
    m = sub.add_parser("models", help="list the course model catalogue")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_handler("camp.models.listing:cli_models"))


def _download(sub) -> None:
    dl = sub.add_parser("download", help="get a model folder: shared folder, cache, ModelScope, then HF")
    dl.add_argument("name", help="catalogue name (see `camp models`) or a ModelScope id owner/name")
    dl.add_argument("--revision", default=None)
    dl.add_argument("--cache-dir", default=None, help="download cache (default: $CAMP_HOME/models)")
    dl.set_defaults(func=_handler("camp.models.hub:cli_download"))


def _env(sub) -> None:
    e = sub.add_parser("env", help="the per-tool environments (core, xtuner, opencompass, lmdeploy)")
    esub = e.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    el = esub.add_parser("list", help="each environment, its path, state and key versions")
    el.add_argument("--json", action="store_true")
    el.set_defaults(func=_handler("camp.runtime.envs:cli_list"))
    ec = esub.add_parser("create", help="build an environment from environments/NAME.txt")
    ec.add_argument("name")
    ec.add_argument("--force", action="store_true", help="rebuild even if it exists and is current")
    ec.add_argument("--path", default=None, help="where to create it (default: $CAMP_HOME/envs/NAME)")
    ec.set_defaults(func=_handler("camp.runtime.envs:cli_create"))
    er = esub.add_parser("register", help="adopt an existing conda env or venv for NAME")
    er.add_argument("name")
    er.add_argument("path", help="the env's prefix (the folder holding bin/python)")
    er.set_defaults(func=_handler("camp.runtime.envs:cli_register"))
    ex = esub.add_parser("run", help="run a command inside an environment: camp env run NAME -- CMD …")
    ex.add_argument("name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(func=_handler("camp.runtime.envs:cli_run"))


def _chat(sub) -> None:
    c = sub.add_parser("chat", help="chat with a model in the terminal (or one answer with --prompt)")
    c.add_argument("model", nargs="?", default="auto",
                   help="catalogue name, local folder, or a model name served at --base-url")
    c.add_argument("--prompt", "-p", default=None, help="answer this one message on stdout and exit")
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:23333/v1")
    c.add_argument("--api-key", default=None)
    c.add_argument("--max-new-tokens", type=int, default=None)
    c.add_argument("--temperature", type=float, default=None)
    c.add_argument("--top-p", type=float, default=None)
    c.add_argument("--image", action="append", default=None, metavar="FILE",
                   help="a picture for a vision-language model (repeat for several); with --prompt")
    c.set_defaults(func=_handler("camp.conversation.repl:cli_chat"))


def _webdemo(sub) -> None:
    w = sub.add_parser("webdemo", help="a Streamlit chat web demo, bound to 127.0.0.1")
    w.add_argument("model", nargs="?", default="auto")
    w.add_argument("--port", type=int, default=None, help="default: a free port from 8501")
    w.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: only this machine)")
    w.add_argument("--system", default=None)
    w.set_defaults(func=_handler("camp.conversation.webdemo:cli_webdemo"))


def _course(sub) -> None:
    co = sub.add_parser("course", help="execute every course notebook headless and print a result table")
    co.add_argument("notebooks", nargs="*", help="notebook names or numbers (default: all)")
    co.add_argument("--profile", default="auto")
    co.add_argument("--out", default=None, help="run folder (default: $CAMP_HOME/runs/course-<time>)")
    co.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="papermill parameter for every notebook")
    co.set_defaults(func=_handler("camp.course:cli_course"))


def _data(sub) -> None:
    da = sub.add_parser("data", help="fine-tuning data: build, convert between formats, check")
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dsc = dsub.add_parser("self-cognition", help="a self-cognition set: the assistant's name and author")
    dsc.add_argument("--name", required=True, help="the assistant's name, e.g. 小助手")
    dsc.add_argument("--author", required=True, help="who made it, e.g. your name")
    dsc.add_argument("--lang", default="zh", choices=["zh", "en", "both"])
    dsc.add_argument("-n", type=int, default=None, help="number of records")
    dsc.add_argument("--format", default="messages", choices=["messages", "alpaca", "xtuner"])
    dsc.add_argument("-o", "--output", required=True, help="a .jsonl file to write")
    dsc.set_defaults(func=_handler("camp.data.identity:cli_self_cognition"))
    dcv = dsub.add_parser("convert", help="convert between alpaca, OpenAI messages and XTuner conversation")
    dcv.add_argument("input")
    dcv.add_argument("output")
    dcv.add_argument("--to", required=True, choices=["messages", "alpaca", "xtuner"])
    dcv.set_defaults(func=_handler("camp.data.records:cli_convert"))
    dck = dsub.add_parser("check", help="validate a dataset file: every bad record with its line and field")
    dck.add_argument("path")
    dck.set_defaults(func=_handler("camp.data.records:cli_check"))


def _finetune(sub) -> None:
    ft = sub.add_parser("finetune", help="plan and run an XTuner fine-tune (LoRA/QLoRA/full), then convert + merge")
    ft.add_argument("model", help="catalogue name, registered name or local folder")
    ft.add_argument("dataset", help="a .jsonl/.json dataset (alpaca, OpenAI messages or XTuner conversation)")
    ft.add_argument("--name", default=None, help="register the merged model under this name (default: derived)")
    ft.add_argument("--profile", default="auto")
    ft.add_argument("--method", default="auto", choices=["auto", "full", "lora", "qlora"])
    ft.add_argument("--max-iters", type=int, default=None)
    ft.add_argument("--epochs", type=float, default=None)
    ft.add_argument("--lr", type=float, default=None)
    ft.add_argument("--max-length", type=int, default=None)
    ft.add_argument("--run-dir", default=None, help="resume or reuse this run folder")
    ft.add_argument("--image-folder", default=None, help="images of a LLaVA dataset (default: beside the JSON)")
    ft.add_argument("--plan-only", action="store_true", help="print the plan and its memory breakdown, do not train")
    ft.add_argument("--json", action="store_true", help="print the result as JSON")
    ft.set_defaults(func=_handler("camp.training.stage:cli_finetune"))


def _eval(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate models with OpenCompass on course or custom datasets")
    ev.add_argument("models", nargs="*", help="catalogue/registered names, local folders, or endpoint URLs "
                    "(http://127.0.0.1:PORT/v1[#model-name])")
    ev.add_argument("--list-datasets", action="store_true", help="list the course datasets and exit")
    ev.add_argument("--assistant-name", default=None, help="the name self_cognition_check expects in answers")
    ev.add_argument("-d", "--dataset", action="append", default=[],
                    help="course set name (see `camp eval --list-datasets`), a .jsonl/.csv file, or an OpenCompass "
                    "dataset name; repeat for several")
    ev.add_argument("--profile", default="auto")
    ev.add_argument("--api-key", default=None, help="for endpoint models")
    ev.add_argument("--tokenizer", default=None, help="local tokenizer folder for endpoint models")
    ev.add_argument("--limit", type=int, default=None, help="only the first N questions of each dataset")
    ev.add_argument("--run-dir", default=None)
    ev.add_argument("--json", action="store_true", help="print the result table as JSON")
    ev.set_defaults(func=_handler("camp.evaluation.stage:cli_eval"))


def _serve(sub) -> None:
    sv = sub.add_parser("serve", help="serve a model as an OpenAI-compatible endpoint (LMDeploy on GPU, "
                        "transformers serve on CPU)")
    sv.add_argument("model", nargs="?", default="auto")
    sv.add_argument("--engine", default="auto", choices=["auto", "lmdeploy", "turbomind", "pytorch", "transformers"])
    sv.add_argument("--quant", default=None, help="w4a16 (AWQ), kv8, kv4, or w4a16+kv4 …")
    sv.add_argument("--port", type=int, default=None, help="default: a free port from 23333")
    sv.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: only this machine)")
    sv.add_argument("--api-key", default=None, help="require this key from clients")
    sv.add_argument("--tp", type=int, default=None, help="tensor parallel GPUs (LMDeploy)")
    sv.add_argument("--profile", default="auto")
    sv.set_defaults(func=_handler("camp.serving.stage:cli_serve"))


def _quantize(sub) -> None:
    qu = sub.add_parser("quantize", help="LMDeploy AWQ W4A16 quantization (CUDA only)")
    qu.add_argument("model")
    qu.add_argument("--method", default="w4a16", choices=["w4a16"])
    qu.add_argument("--name", default=None, help="register the quantized model under this name")
    qu.add_argument("--calib-samples", type=int, default=None)
    qu.add_argument("--calib-seqlen", type=int, default=None)
    qu.set_defaults(func=_handler("camp.serving.awq:cli_quantize"))


def _bench(sub) -> None:
    be = sub.add_parser("bench", help="throughput and latency of an endpoint or an in-process model")
    be.add_argument("target", help="model name/folder (in-process) or endpoint URL http://…/v1[#model]")
    be.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    be.add_argument("--requests", type=int, default=None, help="requests per level (default: 2 × concurrency, ≥ 4)")
    be.add_argument("--max-tokens", type=int, default=64)
    be.add_argument("--api-key", default=None)
    be.add_argument("--json", action="store_true")
    be.set_defaults(func=_handler("camp.serving.bench:cli_bench"))


def _agent(sub) -> None:
    ag = sub.add_parser("agent", help="a Lagent ReAct agent with tools over an endpoint; prints every step")
    ag.add_argument("target", help="endpoint URL http://…/v1[#model], or a model name/folder to serve")
    ag.add_argument("question", nargs="+")
    ag.add_argument("--tools", default="calculator,search,python", help="comma-separated: calculator,search,python")
    ag.add_argument("--max-turns", type=int, default=4)
    ag.add_argument("--api-key", default=None)
    ag.add_argument("--prompt", choices=["lagent", "short"], default="lagent",
                    help="ReAct instructions: Lagent's own, or the short ones camp trains small agents on")
    ag.set_defaults(func=_handler("camp.agents.react:cli_agent"))


def _tiny(sub) -> None:
    t = sub.add_parser("tiny", help="build the embedded tiny model (same as `camp download tiny`)")
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=_handler("camp.models.tiny:cli_tiny"))


def _tiny_vl(sub) -> None:
    t = sub.add_parser("tiny-vl", help="build the embedded vision-language model (same as `camp download tiny-vl`)")
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=_handler("camp.multimodal.tiny_vl:cli_tiny_vl"))


ROUTES = {
    "doctor": _doctor,
    "models": _models,
    "download": _download,
    "env": _env,
    "chat": _chat,
    "webdemo": _webdemo,
    "course": _course,
    "data": _data,
    "finetune": _finetune,
    "eval": _eval,
    "serve": _serve,
    "quantize": _quantize,
    "bench": _bench,
    "agent": _agent,
    "tiny": _tiny,
    "tiny-vl": _tiny_vl,
}


def build_parser() -> argparse.ArgumentParser:
    from camp import chain

    p = argparse.ArgumentParser(prog="camp", description="InternLM full-chain course kit (书生·浦语 实战营)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # the chain's commands in course order, then the course runner
    for name in [*chain.commands(), *(c for c in ROUTES if c not in chain.commands())]:
        ROUTES[name](sub)
    return p


def _terminate(signum, frame):
    # The process policy: SIGTERM ends `camp` like Ctrl-C does, so atexit stops every server and tool it started
    # (the default action would skip atexit and leave them running).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    import camp

    camp.use_views()  # progress bars in a terminal (the core alone prints plain lines)
    try:
        rc = args.func(args)
    except CampError as exc:
        print(f"camp: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("camp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `camp models | head`: the reader left; not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
