"""The `camp` command. Parsing only: each subcommand is a `cli_*` function in the module that owns it,
imported when the subcommand runs, so `camp --help` and `camp doctor` start fast."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from camp.runtime.errors import CampError
from camp.runtime.i18n import t


class _Formatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        return super().add_usage(usage, actions, groups, prefix if prefix is not None else t("用法：", "usage: "))


class _Parser(argparse.ArgumentParser):
    """argparse in the student's language: its own words (usage, sections, -h) too; subcommands inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        add_help = kwargs.pop("add_help", True)
        super().__init__(*args, add_help=False, **kwargs)
        self._positionals.title = t("位置参数", "positional arguments")
        self._optionals.title = t("选项", "options")
        if add_help:
            self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS,
                              help=t("显示帮助并退出", "show this help message and exit"))


def _handler(target: str):
    mod, func = target.split(":")

    def run(args):
        return getattr(importlib.import_module(mod), func)(args)

    return run


def _doctor(sub) -> None:
    d = sub.add_parser("doctor", help=t("检查本机：Python、torch、GPU、配置档、环境、网络、磁盘",
                                          "this machine: Python, torch, GPUs, profile, environments, network, disk"))
    d.add_argument("--json", action="store_true", help=t("以 JSON 输出报告", "print the report as JSON"))
    d.set_defaults(func=_handler("camp.runtime.doctor:cli_doctor"))


def _models(sub) -> None:
    m = sub.add_parser("models", help=t("列出课程的模型目录", "list the course model catalogue"))
    m.add_argument("--json", action="store_true", help=t("以 JSON 输出", "print JSON"))
    m.set_defaults(func=_handler("camp.models.listing:cli_models"))


def _download(sub) -> None:
    dl = sub.add_parser("download", help=t("获取模型文件夹：共享目录、缓存、ModelScope，最后 HF",
                                                  "get a model folder: shared folder, cache, ModelScope, then HF"))
    dl.add_argument("name", help=t("目录中的模型名（见 camp models）或 ModelScope 的 owner/name",
                                       "catalogue name (see camp models) or a ModelScope id owner/name"))
    dl.add_argument("--revision", default=None, help=t("模型版本（分支或提交）", "model revision (branch or commit)"))
    dl.add_argument("--cache-dir", default=None, help=t("下载缓存目录（默认 $CAMP_HOME/models）", "download cache (default: $CAMP_HOME/models)"))
    dl.set_defaults(func=_handler("camp.models.hub:cli_download"))


def _env(sub) -> None:
    e = sub.add_parser("env", help=t("各工具的独立环境（core、xtuner、opencompass、lmdeploy）",
                                            "the per-tool environments (core, xtuner, opencompass, lmdeploy)"))
    esub = e.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    el = esub.add_parser("list", help=t("每个环境的路径、状态和主要版本", "each environment, its path, state and key versions"))
    el.add_argument("--json", action="store_true", help=t("以 JSON 输出", "print JSON"))
    el.set_defaults(func=_handler("camp.runtime.envs:cli_list"))
    ec = esub.add_parser("create", help=t("按 environments/NAME.txt 创建环境", "build an environment from environments/NAME.txt"))
    ec.add_argument("name", help=t("环境名", "environment name"))
    ec.add_argument("--force", action="store_true", help=t("即使已存在且是最新也重建", "rebuild even if it exists and is current"))
    ec.add_argument("--path", default=None, help=t("创建位置（默认 $CAMP_HOME/envs/NAME）", "where to create it (default: $CAMP_HOME/envs/NAME)"))
    ec.set_defaults(func=_handler("camp.runtime.envs:cli_create"))
    er = esub.add_parser("register", help=t("把已有的 conda 环境或 venv 登记为 NAME", "adopt an existing conda env or venv for NAME"))
    er.add_argument("name", help=t("环境名", "environment name"))
    er.add_argument("path", help=t("环境的前缀目录（含 bin/python 的文件夹）", "the env's prefix (the folder holding bin/python)"))
    er.set_defaults(func=_handler("camp.runtime.envs:cli_register"))
    et = esub.add_parser("torch", help=t("本机上 NAME 环境安装 torch 的 pip 参数（CPU 或 CUDA 版）",
                                         "the pip arguments for torch in env NAME on this machine (CPU or CUDA build)"))
    et.add_argument("name", help=t("环境名", "environment name"))
    et.set_defaults(func=_handler("camp.runtime.envs:cli_torch"))
    ex = esub.add_parser("run", help=t("在某个环境里运行命令：camp env run NAME -- 命令 …",
                                           "run a command inside an environment: camp env run NAME -- CMD …"))
    ex.add_argument("name", help=t("环境名", "environment name"))
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help=t("要运行的命令", "the command to run"))
    ex.set_defaults(func=_handler("camp.runtime.envs:cli_run"))


def _chat(sub) -> None:
    c = sub.add_parser("chat", help=t("在终端里和模型对话（或用 --prompt 只回答一句）",
                                           "chat with a model in the terminal (or one answer with --prompt)"))
    c.add_argument("model", nargs="?", default="auto",
                   help=t("目录中的模型名、本地文件夹，或 --base-url 服务上的模型名",
                          "catalogue name, local folder, or a model name served at --base-url"))
    c.add_argument("--prompt", "-p", default=None, help=t("只回答这一条消息（输出到 stdout）后退出", "answer this one message on stdout and exit"))
    c.add_argument("--system", default=None, help=t("系统提示词", "system prompt"))
    c.add_argument("--base-url", default=None, help=t("OpenAI 兼容的服务地址，例如 http://127.0.0.1:23333/v1",
                                                               "an OpenAI-compatible endpoint, e.g. http://127.0.0.1:23333/v1"))
    c.add_argument("--api-key", default=None, help=t("服务的 API key", "the endpoint's API key"))
    c.add_argument("--max-new-tokens", type=int, default=None, help=t("最多生成的 token 数", "most tokens to generate"))
    c.add_argument("--temperature", type=float, default=None, help=t("温度（0 = 贪心解码）", "temperature (0 = greedy)"))
    c.add_argument("--top-p", type=float, default=None, help=t("核采样的 top-p", "nucleus sampling top-p"))
    c.add_argument("--image", action="append", default=None, metavar="FILE",
                   help=t("给视觉语言模型的图片（可重复）；与 --prompt 一起用",
                          "a picture for a vision-language model (repeat for several); with --prompt"))
    c.set_defaults(func=_handler("camp.conversation.repl:cli_chat"))


def _webdemo(sub) -> None:
    w = sub.add_parser("webdemo", help=t("Streamlit 网页对话 demo（只监听 127.0.0.1）", "a Streamlit chat web demo, bound to 127.0.0.1"))
    w.add_argument("model", nargs="?", default="auto",
                   help=t("模型名或文件夹（默认按配置档选择）", "model name or folder (default: the profile's)"))
    w.add_argument("--port", type=int, default=None, help=t("默认：从 8501 起的空闲端口", "default: a free port from 8501"))
    w.add_argument("--host", default="127.0.0.1", help=t("监听地址（默认 127.0.0.1：只有本机能访问）",
                                                             "listen address (default 127.0.0.1: only this machine)"))
    w.add_argument("--system", default=None, help=t("系统提示词", "system prompt"))
    w.set_defaults(func=_handler("camp.conversation.webdemo:cli_webdemo"))


def _course(sub) -> None:
    co = sub.add_parser("course", help=t("无界面地运行每一课的 notebook，并打印结果表",
                                            "execute every course notebook headless and print a result table"))
    co.add_argument("notebooks", nargs="*", help=t("notebook 的名字或编号（默认：全部）", "notebook names or numbers (default: all)"))
    co.add_argument("--profile", default="auto", help=t("硬件配置档（默认自动检测）", "hardware profile (default: detected)"))
    co.add_argument("--out", default=None, help=t("运行目录（默认 $CAMP_HOME/runs/course-<时间>）",
                                                      "run folder (default: $CAMP_HOME/runs/course-<time>)"))
    co.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help=t("传给每个 notebook 的 papermill 参数", "papermill parameter for every notebook"))
    co.set_defaults(func=_handler("camp.course:cli_course"))


def _data(sub) -> None:
    da = sub.add_parser("data", help=t("微调数据：生成、格式转换、检查", "fine-tuning data: build, convert between formats, check"))
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dsc = dsub.add_parser("self-cognition", help=t("生成自我认知数据集：助手的名字和作者",
                                                                    "a self-cognition set: the assistant's name and author"))
    dsc.add_argument("--name", required=True, help=t("助手的名字，例如 小助手", "the assistant's name, e.g. 小助手"))
    dsc.add_argument("--author", required=True, help=t("作者，例如你的名字", "who made it, e.g. your name"))
    dsc.add_argument("--lang", default="zh", choices=["zh", "en", "both"], help=t("语言", "language"))
    dsc.add_argument("-n", type=int, default=None, help=t("条数", "number of records"))
    dsc.add_argument("--format", default="messages", choices=["messages", "alpaca", "xtuner"],
                     help=t("输出格式", "output format"))
    dsc.add_argument("-o", "--output", required=True, help=t("要写入的 .jsonl 文件", "a .jsonl file to write"))
    dsc.set_defaults(func=_handler("camp.data.identity:cli_self_cognition"))
    dcv = dsub.add_parser("convert", help=t("在 alpaca、OpenAI messages 和 XTuner conversation 格式之间转换",
                                                "convert between alpaca, OpenAI messages and XTuner conversation"))
    dcv.add_argument("input", help=t("输入文件", "input file"))
    dcv.add_argument("output", help=t("输出文件", "output file"))
    dcv.add_argument("--to", required=True, choices=["messages", "alpaca", "xtuner"], help=t("目标格式", "target format"))
    dcv.set_defaults(func=_handler("camp.data.records:cli_convert"))
    dck = dsub.add_parser("check", help=t("检查数据集文件：列出每条有问题记录的行号和字段",
                                              "validate a dataset file: every bad record with its line and field"))
    dck.add_argument("path", help=t("数据集文件", "dataset file"))
    dck.set_defaults(func=_handler("camp.data.records:cli_check"))


def _finetune(sub) -> None:
    ft = sub.add_parser("finetune", help=t("规划并运行 XTuner 微调（LoRA/QLoRA/全参数），然后转换并合并",
                                                 "plan and run an XTuner fine-tune (LoRA/QLoRA/full), then convert + merge"))
    ft.add_argument("model", help=t("目录中的模型名、已注册的名字或本地文件夹", "catalogue name, registered name or local folder"))
    ft.add_argument("dataset", help=t(".jsonl/.json 数据集（alpaca、OpenAI messages 或 XTuner conversation）",
                                   "a .jsonl/.json dataset (alpaca, OpenAI messages or XTuner conversation)"))
    ft.add_argument("--name", default=None, help=t("合并后的模型注册为这个名字（默认自动生成；名字已被占用时加版本号）",
                                                 "register the merged model under this name (default: derived; a taken name "
                                                 "gets a version)"))
    ft.add_argument("--profile", default="auto", help=t("硬件配置档（默认自动检测）", "hardware profile (default: detected)"))
    ft.add_argument("--method", default="auto", choices=["auto", "full", "lora", "qlora"],
                    help=t("微调方法", "fine-tuning method"))
    ft.add_argument("--max-iters", type=int, default=None, help=t("迭代次数", "iterations"))
    ft.add_argument("--epochs", type=float, default=None, help=t("训练轮数", "epochs"))
    ft.add_argument("--lr", type=float, default=None, help=t("学习率", "learning rate"))
    ft.add_argument("--max-length", type=int, default=None, help=t("最大序列长度", "longest sequence"))
    ft.add_argument("--run-dir", default=None, help=t("续跑或复用这个运行目录", "resume or reuse this run folder"))
    ft.add_argument("--image-folder", default=None, help=t("LLaVA 数据集的图片文件夹（默认：JSON 旁边）",
                                                          "images of a LLaVA dataset (default: beside the JSON)"))
    ft.add_argument("--plan-only", action="store_true", help=t("只打印计划和显存/内存估算，不训练",
                                                                        "print the plan and its memory breakdown, do not train"))
    ft.add_argument("--replace", action="store_true",
                    help=t("名字已被占用时替换旧模型（默认保留旧模型，新模型加版本号）",
                           "replace the model a taken --name points to (default: keep it, version the new name)"))
    ft.add_argument("--json", action="store_true", help=t("以 JSON 输出结果", "print the result as JSON"))
    ft.set_defaults(func=_handler("camp.training.stage:cli_finetune"))


def _eval(sub) -> None:
    ev = sub.add_parser("eval", help=t("用 OpenCompass 在课程或自定义数据集上评测模型",
                                          "evaluate models with OpenCompass on course or custom datasets"))
    ev.add_argument("models", nargs="*", help=t("目录/已注册的模型名、本地文件夹，或服务地址（http://127.0.0.1:端口/v1[#模型名]）",
                           "catalogue/registered names, local folders, or endpoint URLs "
                           "(http://127.0.0.1:PORT/v1[#model-name])"))
    ev.add_argument("--list-datasets", action="store_true", help=t("列出课程数据集后退出", "list the course datasets and exit"))
    ev.add_argument("--assistant-name", default=None, help=t("self_cognition_check 期望回答中出现的名字",
                                                                      "the name self_cognition_check expects in answers"))
    ev.add_argument("-d", "--dataset", action="append", default=[],
                    help=t("课程数据集名（见 camp eval --list-datasets）、.jsonl/.csv 文件或 OpenCompass 数据集名；可重复",
                           "course set name (see camp eval --list-datasets), a .jsonl/.csv file, or an OpenCompass "
                           "dataset name; repeat for several"))
    ev.add_argument("--profile", default="auto", help=t("硬件配置档（默认自动检测）", "hardware profile (default: detected)"))
    ev.add_argument("--api-key", default=None, help=t("服务模型的 API key", "for endpoint models"))
    ev.add_argument("--tokenizer", default=None, help=t("服务模型对应的本地分词器文件夹", "local tokenizer folder for endpoint models"))
    ev.add_argument("--limit", type=int, default=None, help=t("每个数据集只评前 N 题", "only the first N questions of each dataset"))
    ev.add_argument("--run-dir", default=None, help=t("运行目录", "run folder"))
    ev.add_argument("--json", action="store_true", help=t("以 JSON 输出结果表", "print the result table as JSON"))
    ev.set_defaults(func=_handler("camp.evaluation.stage:cli_eval"))


def _serve(sub) -> None:
    sv = sub.add_parser("serve", help=t("把模型部署成 OpenAI 兼容的服务（GPU 上用 LMDeploy，CPU 上用 transformers serve）",
                               "serve a model as an OpenAI-compatible endpoint (LMDeploy on GPU, "
                               "transformers serve on CPU)"))
    sv.add_argument("model", nargs="?", default="auto",
                    help=t("模型名或文件夹（默认按配置档选择）", "model name or folder (default: the profile's)"))
    sv.add_argument("--engine", default="auto", choices=["auto", "lmdeploy", "turbomind", "pytorch", "transformers"],
                    help=t("推理引擎", "inference engine"))
    sv.add_argument("--quant", default=None, help=t("量化方式：w4a16（AWQ）、kv8、kv4 或 w4a16+kv4 …", "w4a16 (AWQ), kv8, kv4, or w4a16+kv4 …"))
    sv.add_argument("--port", type=int, default=None, help=t("默认：从 23333 起的空闲端口", "default: a free port from 23333"))
    sv.add_argument("--host", default="127.0.0.1", help=t("监听地址（默认 127.0.0.1：只有本机能访问）",
                                                             "listen address (default 127.0.0.1: only this machine)"))
    sv.add_argument("--api-key", default=None, help=t("要求客户端提供这个 key", "require this key from clients"))
    sv.add_argument("--tp", type=int, default=None, help=t("张量并行的 GPU 数（LMDeploy）", "tensor parallel GPUs (LMDeploy)"))
    sv.add_argument("--profile", default="auto", help=t("硬件配置档（默认自动检测）", "hardware profile (default: detected)"))
    sv.add_argument("--model-name", default=None,
                    help=t("客户端请求时用的模型名（默认：目录名或注册名），同 LMDeploy 的 --model-name",
                           "the name clients send (default: the catalogue or registered name), as LMDeploy's "
                           "--model-name"))
    sv.set_defaults(func=_handler("camp.serving.stage:cli_serve"))


def _quantize(sub) -> None:
    qu = sub.add_parser("quantize", help=t("LMDeploy AWQ W4A16 量化（仅 CUDA）", "LMDeploy AWQ W4A16 quantization (CUDA only)"))
    qu.add_argument("model", help=t("模型名或文件夹", "model name or folder"))
    qu.add_argument("--method", default="w4a16", choices=["w4a16"], help=t("量化方法", "quantization method"))
    qu.add_argument("--name", default=None, help=t("量化后的模型注册为这个名字", "register the quantized model under this name"))
    qu.add_argument("--calib-samples", type=int, default=None, help=t("校准样本数", "calibration samples"))
    qu.add_argument("--calib-seqlen", type=int, default=None, help=t("校准序列长度", "calibration sequence length"))
    qu.set_defaults(func=_handler("camp.serving.awq:cli_quantize"))


def _bench(sub) -> None:
    be = sub.add_parser("bench", help=t("测服务或进程内模型的吞吐和延迟", "throughput and latency of an endpoint or an in-process model"))
    be.add_argument("target", help=t("模型名/文件夹（进程内）或服务地址 http://…/v1[#模型名]",
                                    "model name/folder (in-process) or endpoint URL http://…/v1[#model]"))
    be.add_argument("--concurrency", default="1,4,16", help=t("并发数，逗号分隔", "comma-separated levels"))
    be.add_argument("--requests", type=int, default=None, help=t("每档的请求数（默认 2 × 并发数，至少 4）",
                                                                       "requests per level (default: 2 × concurrency, ≥ 4)"))
    be.add_argument("--max-tokens", type=int, default=64, help=t("每个请求最多生成的 token 数", "most tokens per request"))
    be.add_argument("--api-key", default=None, help=t("服务的 API key", "the endpoint's API key"))
    be.add_argument("--json", action="store_true", help=t("以 JSON 输出", "print JSON"))
    be.set_defaults(func=_handler("camp.serving.bench:cli_bench"))


def _agent(sub) -> None:
    ag = sub.add_parser("agent", help=t("基于服务的 Lagent ReAct 智能体（带工具），打印每一步",
                                        "a Lagent ReAct agent with tools over an endpoint; prints every step"))
    ag.add_argument("target", help=t("服务地址 http://…/v1[#模型名]，或要部署的模型名/文件夹",
                                    "endpoint URL http://…/v1[#model], or a model name/folder to serve"))
    ag.add_argument("question", nargs="+", help=t("问题", "the question"))
    ag.add_argument("--tools", default="calculator,search,python", help=t("工具，逗号分隔：calculator,search,python", "comma-separated: calculator,search,python"))
    ag.add_argument("--max-turns", type=int, default=4, help=t("最多几轮工具调用", "most tool-call rounds"))
    ag.add_argument("--api-key", default=None, help=t("服务的 API key", "the endpoint's API key"))
    ag.add_argument("--prompt", choices=["lagent", "short"], default="lagent",
                    help=t("ReAct 提示词：Lagent 自带的，或 camp 训练小模型智能体用的简短版",
                           "ReAct instructions: Lagent's own, or the short ones camp trains small agents on"))
    ag.set_defaults(func=_handler("camp.agents.react:cli_agent"))


def _rag(sub) -> None:
    r = sub.add_parser("rag", help=t("知识库：从文档构建、带出处检索、提问、提供服务",
                                     "knowledge bases: build from documents, search with sources, ask, serve"))
    rsub = r.add_subparsers(dest="rag_command", metavar="ACTION", required=True)
    name_help = t("知识库的名字（默认 default）", "the knowledge base's name (default: default)")
    k_help = t("检索几段（默认 3）", "passages to retrieve (default 3)")
    mode_help = t("检索方式：混合、向量或 BM25（默认混合）", "retrieval: hybrid, dense or BM25 (default hybrid)")
    json_help = t("输出 JSON", "print JSON")
    model_help = t("服务地址 http://…/v1[#模型名]，或要启动服务的模型名",
                   "endpoint URL http://…/v1[#model] or a model name to serve")
    rb = rsub.add_parser("build", help=t("读入、切块、（离线）向量化并索引文档；只处理新增和改动的文件",
                                         "load, chunk, embed (offline) and index documents; updates incrementally"))
    rb.add_argument("sources", nargs="+", help=t("文件夹或文件（.md .txt .html .pdf）",
                                                 "folders or files (.md .txt .html .pdf)"))
    rb.add_argument("--name", default="default", help=name_help)
    rb.add_argument("--chunk-size", type=int, default=None, help=t("每段的字符数（默认 300）",
                                                                   "characters per passage (default 300)"))
    rb.add_argument("--rebuild", action="store_true", help=t("全部重新向量化（换了切块大小时）",
                                                             "embed everything again (another chunk size)"))
    rb.set_defaults(func=_handler("camp.rag.cli:cli_build"))
    rs = rsub.add_parser("search", help=t("与问题最相关的段落，带文件、行号和分数",
                                          "the best passages for a query, with file, lines and scores"))
    rs.add_argument("query", nargs="+", help=t("要检索的问题", "the query"))
    rs.add_argument("--name", default="default", help=name_help)
    rs.add_argument("-k", type=int, default=3, help=k_help)
    rs.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "bm25"], help=mode_help)
    rs.add_argument("--json", action="store_true", help=json_help)
    rs.set_defaults(func=_handler("camp.rag.cli:cli_search"))
    ra = rsub.add_parser("ask", help=t("用模型根据检索到的段落回答，并注明出处",
                                       "answer from the retrieved passages with a model, and cite them"))
    ra.add_argument("question", nargs="+", help=t("问题", "the question"))
    ra.add_argument("--name", default="default", help=name_help)
    ra.add_argument("--model", required=True, help=model_help)
    ra.add_argument("-k", type=int, default=3, help=k_help)
    ra.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "bm25"], help=mode_help)
    ra.add_argument("--json", action="store_true", help=json_help)
    ra.set_defaults(func=_handler("camp.rag.cli:cli_ask"))
    rv = rsub.add_parser("serve", help=t("把知识库放在模型前面，作为 OpenAI 兼容的服务",
                                         "serve a knowledge base as an OpenAI-compatible endpoint in front of a model"))
    rv.add_argument("--name", default="default", help=name_help)
    rv.add_argument("--model", required=True, help=model_help)
    rv.add_argument("--port", type=int, default=None, help=t("端口（默认：从 8600 起第一个空闲的）",
                                                             "default: a free port from 8600"))
    rv.add_argument("--host", default="127.0.0.1", help=t("监听地址（默认 127.0.0.1：只有本机能访问）",
                                                          "listen address (default 127.0.0.1: only this machine)"))
    rv.add_argument("--api-key", default=None, help=t("要求客户端带上这个 key", "require this key from clients"))
    rv.add_argument("-k", type=int, default=3, help=k_help)
    rv.set_defaults(func=_handler("camp.rag.cli:cli_serve"))


def _tiny(sub) -> None:
    p = sub.add_parser("tiny", help=t("准备内置的 tiny 模型（复制仓库里预先训练好的文件；--force 重新训练）",
                                        "get the embedded tiny model (copies the repository's prebuilt files; --force "
                                        "trains it anew)"))
    p.add_argument("--force", action="store_true", help=t("重新训练（2 核 CPU 上约 10 分钟）", "train it anew (about 10 minutes on a 2-core CPU)"))
    p.set_defaults(func=_handler("camp.models.tiny:cli_tiny"))


def _homework(sub) -> None:
    hw = sub.add_parser("homework", help=t("基于 nbgrader 的作业：标注、发布、提交、收取、（沙箱里）评分、反馈、成绩册",
                                           "homework on nbgrader: mark, release, submit, collect, grade (sandboxed), "
                                           "feedback, gradebook"))
    hsub = hw.add_subparsers(dest="homework_command", metavar="ACTION", required=True)

    def course_arg(p):
        p.add_argument("--course", default=None, help=t("课程文件夹（默认 $CAMP_HOMEWORK 或 $CAMP_HOME/homework）",
                                                        "the course folder (default: $CAMP_HOMEWORK or "
                                                        "$CAMP_HOME/homework)"))

    def assignment_arg(p, nargs="?"):
        p.add_argument("assignment", nargs=nargs, default=None, help=t("作业名（默认：唯一的那份作业）",
                                                                     "the assignment (default: the only one)"))

    m = hsub.add_parser("mark", help=t("出题人：按 hw:* 单元格标签写入 nbgrader 元数据（见 docs/homework.md）",
                                       "author: write nbgrader metadata from hw:* cell tags (see docs/homework.md)"))
    m.add_argument("notebooks", nargs="+", help=t("要标注的笔记本", "the notebooks to mark"))
    m.add_argument("--check", action="store_true", help=t("只检查标签，不写文件", "only check the tags, write nothing"))
    r = hsub.add_parser("release", help=t("助教：生成学生版（nbgrader generate_assignment）",
                                          "TA: the student versions (nbgrader generate_assignment)"))
    r.add_argument("sources", nargs="*", help=t("源笔记本或作业文件夹（默认：带作业的各课）",
                                                "source notebooks or assignment folders (default: lessons with "
                                                "exercises)"))
    course_arg(r)
    s = hsub.add_parser("submit", help=t("学员：把运行过的笔记本连同清单打包成一个文件",
                                         "student: pack the executed notebook into one file with a manifest"))
    s.add_argument("notebook", help=t("运行过的作业笔记本", "the executed homework notebook"))
    s.add_argument("--student", required=True, help=t("你的学号", "your student id"))
    s.add_argument("--assignment", default=None, help=t("作业名（默认从笔记本里读）", "default: from the notebook"))
    s.add_argument("-o", "--output", default=None, help=t("输出文件夹或 .zip 路径（默认：当前目录）",
                                                          "a folder or .zip path (default: here)"))
    c = hsub.add_parser("collect", help=t("助教：导入一个文件夹里的提交（zip 或笔记本）",
                                          "TA: import a folder of submissions (zips or notebooks)"))
    c.add_argument("folder", help=t("放提交的文件夹", "the folder of submissions"))
    c.add_argument("--assignment", default=None, help=t("作业名（默认从提交里读）", "default: from the submissions"))
    course_arg(c)
    g = hsub.add_parser("grade", help=t("助教：在沙箱里自动评分，同时 N 份；已评过的跳过",
                                        "TA: autograde in the sandbox, N at a time; skips graded ones"))
    assignment_arg(g)
    g.add_argument("--workers", "-j", type=int, default=1, help=t("同时评几份（默认 1）",
                                                                  "submissions graded at once (default 1)"))
    g.add_argument("--force", action="store_true", help=t("已评过的也重新评", "grade again even if graded"))
    g.add_argument("--student", action="append", default=[], help=t("只评这个学员（可重复）",
                                                                    "only this student (repeatable)"))
    g.add_argument("--shard", default=None, metavar="I/N", help=t(
        "只评从第 I 份起每隔 N 份的提交（从 0 数）：Slurm 数组或 Kubernetes indexed Job 的一个任务",
        "only every N-th submission from the I-th (0-based): one task of a Slurm array or Kubernetes indexed Job"))
    g.add_argument("--cell-timeout", type=int, default=None, help=t("每个单元格的秒数（默认 30）",
                                                                    "seconds per cell (default 30)"))
    g.add_argument("--time-limit", type=int, default=None, help=t("每份提交的秒数（默认 300）",
                                                                  "seconds per submission (default 300)"))
    g.add_argument("--memory-mb", type=int, default=None, help=t("内核的内存上限 MB（默认 2048）",
                                                                 "kernel memory limit (default 2048)"))
    g.add_argument("--allow-read", action="append", default=[], help=t("内核可以读的路径（模型等）",
                                                                       "a path the kernel may read (models…)"))
    g.add_argument("--no-sandbox", action="store_true", help=t("只用于可信的笔记本（例如参考答案）",
                                                               "trusted notebooks only (e.g. the solutions)"))
    course_arg(g)
    f = hsub.add_parser("feedback", help=t("助教：给每个学员生成 nbgrader 的 HTML 反馈",
                                           "TA: nbgrader HTML feedback per student"))
    assignment_arg(f)
    course_arg(f)
    b = hsub.add_parser("gradebook", help=t("助教：CSV + HTML 成绩报告（每题得分、分布图）",
                                            "TA: CSV + HTML report (per-task scores, distribution chart)"))
    assignment_arg(b)
    course_arg(b)
    hw.set_defaults(func=_handler("camp.homework.stage:cli_homework"))


def _tiny_vl(sub) -> None:
    p = sub.add_parser("tiny-vl", help=t("构建内置的视觉语言 tiny 模型（同 camp download tiny-vl）",
                                         "build the embedded vision-language model (same as `camp download tiny-vl`)"))
    p.add_argument("--force", action="store_true", help=t("重新训练", "train it anew"))
    p.set_defaults(func=_handler("camp.multimodal.tiny_vl:cli_tiny_vl"))


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
    "rag": _rag,
    "tiny": _tiny,
    "tiny-vl": _tiny_vl,
    "homework": _homework,
}


def build_parser() -> argparse.ArgumentParser:
    from camp import chain

    p = _Parser(prog="camp", description=t("书生·浦语 实战营：InternLM 全链路课程工具",
                                                           "InternLM full-chain course kit (书生·浦语 实战营)"))
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
