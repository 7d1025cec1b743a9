"""Fine-tuning with XTuner: `camp.finetune(model, dataset)` and `camp finetune MODEL DATA`.

    r = camp.finetune("tiny", camp.data.self_cognition("小助手", "张三"), name="my-assistant")
    camp.chat("my-assistant").ask("你是谁？");  r.compare(["你是谁？"])

One call runs the whole chain, each stage resumable, in one run folder:
  1. check the dataset (camp.data.load) and plan it (camp.plan.plan) — a bad record or a plan that cannot fit is
     refused before anything starts; then the model folder (camp.models.resolve: may download);
  2. write `config.py` (a readable XTuner config for the plan) and `data.jsonl` (the dataset in XTuner's
     conversation format) — open them to see what XTuner runs;
  3. train: the xtuner env's python runs `xtuner/tools/train.py` as a Job (the `xtuner` CLI exits 0 even when
     training fails, so success is judged from the work dir: the last iteration's checkpoint and a log without a
     Traceback). A cancelled or killed run resumes from its last checkpoint when called again with the same
     run_dir, and still ends at the same iteration;
  4. `xtuner convert pth_to_hf` (the HF adapter) and `xtuner convert merge` (the full model), as Jobs;
  5. register the merged folder by name (camp.models.register) so camp.chat, evaluation and deployment take it.

Run folder (`$CAMP_HOME/runs/<time>-finetune-<model>`, or run_dir):
  config.py, data.jsonl, deepspeed.json?  what XTuner runs        run.json     what was asked, the plan
  work/       XTuner's work dir (iter_N.pth, last_checkpoint, its own logs)
  adapter/    the HF LoRA adapter            merged/     the merged model (registered)
  jobs/{train,convert,merge}/log.txt         each tool's output      result.json  the outcome
Folders appear complete or not at all (written to a temporary sibling, marked, then renamed).

The CPU workarounds XTuner 0.2.0 needs live in camp.xtuner_compat; the live view in camp.ui.finetune_view.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from camp import plan as _planner
from camp.errors import CampError

# cpu-tiny recipe, measured on the tiny model with camp.data.self_cognition sets for 8 assistant names: LoRA
# r=64/alpha=16 (the plan's), lr 1e-2 with a cosine schedule, CPU_EXAMPLES examples seen. At batch 4 (100
# iterations) every name answered exactly from iteration 70 at the latest, while 80 iterations missed one; at
# batch 1 (400 iterations) every name was exact from iteration 310 at the latest. The fine-tuned answer's
# smallest logit margin was 0.96 or more, and XTuner's float16 merge moved it by at most 0.002.
CPU_EXAMPLES = 400
CPU_LR = 1e-2
CPU_BATCH = 4
# GPU: XTuner's recipes (LoRA/QLoRA lr 2e-4, full 2e-5, 3 epochs). A self-cognition set of a few dozen records
# is far smaller than the 8000-copy sets of the tutorials, so at least GPU_MIN_ITERS micro-batches are run
# (about the optimizer steps of the camp tutorial's run). Not measured here (no GPU): a starting point.
GPU_LR = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
GPU_EPOCHS = 3
GPU_MIN_ITERS = 600
SEED = 0  # fixed: the same run folder and data give the same training
MARKER = ".camp-complete"


# ============================================================================ XTuner's log → progress
_PREFIX = re.compile(r"^\d\d/\d\d \d\d:\d\d:\d\d - mmengine - (?P<level>[A-Z]+) - (?P<msg>.*)$")
_ITER = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\]\s*(.*)$")
_KV = re.compile(r"([A-Za-z_]+): (\S+)")
_RESUMED = re.compile(r"resumed epoch: \d+, iter: (\d+)")
_SAVED = re.compile(r"Saving checkpoint at (\d+) iterations")
_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt)\b(?::.*)?$")
_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning|^\s+warnings\.warn\(")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # mmengine colours its level names when run from a Jupyter kernel


def split_sample(text: str) -> tuple[str, str]:
    """(question, answer) from one chat-hook sample: the prompt as XTuner rendered it (InternLM2 chat template),
    then the model's answer."""
    q = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", text, re.S)
    answer = text.rsplit("<|im_start|>assistant\n", 1)[-1] if "<|im_start|>assistant\n" in text else text
    # generation stops at <|im_end|> (the template's stop word) or </s>
    answer = answer.split("<|im_end|>", 1)[0].split("</s>", 1)[0]
    return (q.group(1).strip() if q else ""), answer.strip()


class LogParser:
    """Reads XTuner/mmengine output lines: `Iter(train) [ 40/100]  lr: …  eta: …  loss: …` → progress, losses;
    the chat hook's `Sample output:` blocks → samples by iteration; resumes, checkpoints, and any Traceback.

    Thread-safe enough for views: the Job's reader thread appends, views read (`events` only grows)."""

    def __init__(self):
        self.iter = 0
        self.total: int | None = None
        self.losses: dict[int, float] = {}
        self.metrics: dict = {}
        self.samples: dict[int, dict[str, str]] = {}
        self.events: list[tuple] = []  # ("loss", iter, loss) | ("sample", iter, question, answer)
        self.resumed_from: list[int] = []
        self.checkpoints: list[int] = []
        self.traceback = False
        self.error: str | None = None
        self._sample: list[str] | None = None
        self._sample_iter = 0

    def __call__(self, line: str, progress=None) -> None:
        self.feed(line)
        if progress is not None:
            progress.update(n=self.iter, total=self.total, **self.metrics)

    def feed(self, line: str) -> None:
        if "\x1b[" in line:
            line = _ANSI.sub("", line)
        m = _PREFIX.match(line)
        if self._sample is not None:
            if m is None and not _WARNING.match(line) and not line.startswith("Traceback"):
                self._sample.append(line)
                return
            self._end_sample()
        if m is None:
            if line.startswith("Traceback (most recent call last)"):
                self.traceback = True
            elif self.traceback and _ERROR.match(line.strip()):
                self.error = line.strip()
            return
        msg = m.group("msg")
        it = _ITER.search(msg)
        if it:
            self.iter, self.total = int(it.group(1)), int(it.group(2))
            for k, v in _KV.findall(it.group(3)):
                try:
                    self.metrics[k] = float(v) if k != "eta" else v
                except ValueError:
                    self.metrics[k] = v
            if isinstance(self.metrics.get("loss"), float):
                self.losses[self.iter] = self.metrics["loss"]
                self.events.append(("loss", self.iter, self.metrics["loss"]))
            return
        if msg.startswith("Sample output:"):
            self._sample = [msg[len("Sample output:"):].strip()] if msg[len("Sample output:"):].strip() else []
            return
        if "in EvaluateChatHook." in msg:  # before_train / after_train_iter / after_train: samples of this iter
            self._sample_iter = self.iter
            return
        r = _RESUMED.search(msg)
        if r:
            self.iter = int(r.group(1))
            self.resumed_from.append(self.iter)
            return
        s = _SAVED.search(msg)
        if s:
            self.iter = int(s.group(1))
            self.checkpoints.append(self.iter)

    def _end_sample(self) -> None:
        text = "\n".join(self._sample or [])
        self._sample = None
        if not text.strip():
            return
        q, a = split_sample(text)
        seen = self.samples.setdefault(self._sample_iter, {})
        if seen.get(q) != a:  # after_train repeats the last iteration's samples: show them once
            seen[q] = a
            self.events.append(("sample", self._sample_iter, q, a))

    def close(self) -> None:
        """The output ended: a sample still being read is complete."""
        if self._sample is not None:
            self._end_sample()


class ToolLog:
    """For `xtuner convert …`: remembers a Traceback and its error line (the xtuner CLI exits 0 anyway)."""

    def __init__(self):
        self.traceback = False
        self.error: str | None = None

    def __call__(self, line: str, progress=None) -> None:
        if line.startswith("Traceback (most recent call last)"):
            self.traceback = True
        elif self.traceback and _ERROR.match(line.strip()):
            self.error = line.strip()


def parse_log(text: str) -> LogParser:
    p = LogParser()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("[camp] ", "$ ")):  # the Job's own lines in log.txt
            p.feed(line)
    p.close()
    return p


# ============================================================================ the config
def _round_to(x: float, step: int) -> int:
    return max(step, int(round(x / step)) * step)


def schedule(max_iters: int, device: str) -> dict:
    """How often to log, sample (chat hook) and save: samples and checkpoints fall on logged iterations."""
    log_every = 1 if max_iters < 50 else 5 if max_iters <= 500 or device == "cpu" else 10
    return {"log_every": log_every,
            "eval_every": min(_round_to(max_iters / 5, log_every), 500),
            "save_every": min(_round_to(max_iters / 4, log_every), 500)}


def iterations(plan, n_records: int, *, max_iters: int | None = None, epochs: float | None = None
               ) -> tuple[int, str]:
    """(max_iters, how it was chosen). One iteration = one micro-batch per GPU (mmengine counts so)."""
    if max_iters is not None and epochs is not None:
        raise CampError("give max_iters or epochs, not both")
    if max_iters is not None:
        if max_iters < 1:
            raise CampError(f"max_iters must be at least 1, not {max_iters}")
        return int(max_iters), f"{max_iters} iterations (asked for)"
    per_epoch = math.ceil(math.ceil(n_records / max(1, plan.num_gpus)) / plan.batch_size)
    if epochs is not None:
        if epochs <= 0:
            raise CampError(f"epochs must be positive, not {epochs}")
        n = max(1, math.ceil(epochs * per_epoch))
        return n, f"{epochs:g} epochs × {per_epoch} batches of {plan.batch_size}"
    if plan.device == "cpu":
        n = math.ceil(CPU_EXAMPLES / plan.batch_size)
        return n, f"{n} × batch {plan.batch_size} = {CPU_EXAMPLES} examples (the cpu-tiny recipe)"
    n = max(GPU_EPOCHS * per_epoch, GPU_MIN_ITERS)
    return n, (f"{GPU_EPOCHS} epochs × {per_epoch} batches" if n > GPU_MIN_ITERS
               else f"{GPU_MIN_ITERS} iterations (at least; {GPU_EPOCHS} epochs are only {GPU_EPOCHS * per_epoch})")


def default_lr(plan) -> float:
    return CPU_LR if plan.device == "cpu" else GPU_LR[plan.method]


def _comment(text: str, indent: int = 0) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=110 - indent, initial_indent=" " * indent + "# ",
                         subsequent_indent=" " * indent + "# ")


def _py(v) -> str:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (str, list)) else repr(v)


def render_config(plan, *, model_path, data_path, n_records: int, max_iters: int, lr: float,
                  evaluation_inputs: list[str], title: str = "", iters_note: str = "", system: str = "",
                  seed: int = SEED) -> str:
    """The XTuner config for `plan` as Python text, laid out like XTuner's own configs (PART 1 … 5) and commented
    for students. CPU plans get the workarounds of camp.xtuner_compat; GPU plans XTuner's usual settings."""
    from camp import xtuner_compat as compat

    cpu = plan.device == "cpu"
    sched = schedule(max_iters, plan.device)
    warmup = max(1, round(0.03 * max_iters))
    lora = plan.method in ("lora", "qlora")
    dtype = "torch.float32" if cpu else f"torch.{plan.dtype}"
    W: list[str] = []
    w = W.append

    w(f"# XTuner config written by camp{' for ' + title if title else ''}.")
    w("# 由 camp 按训练计划生成的 XTuner 配置：可以直接阅读、修改，并自己运行：")
    w("#   xtuner train config.py --work-dir work" + (" --deepspeed deepspeed.json" if plan.deepspeed else ""))
    if plan.num_gpus > 1:
        w(f"#   (on {plan.num_gpus} GPUs: NPROC_PER_NODE={plan.num_gpus} xtuner train …)")
    w(f"# Plan: {plan.headline()}")
    w(f"# Predicted peak memory: {plan.memory['total']:.2f} GiB {'of RAM' if cpu else 'per GPU'} "
      f"(budget {plan.budget_gib:.1f} GiB)")
    w("")
    if cpu:
        w(compat.BF16_PATCH)
    w("import torch")
    w("from datasets import load_dataset")
    w(f"from mmengine.dataset import {compat.CPU['sampler'] if cpu else 'DefaultSampler'}")
    w("from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook")
    w(f"from mmengine.optim import {compat.CPU['optim_wrapper'] if cpu else 'AmpOptimWrapper'}, CosineAnnealingLR, "
      "LinearLR")
    if lora:
        w("from peft import LoraConfig")
    w("from torch.optim import AdamW")
    w("from transformers import AutoModelForCausalLM, AutoTokenizer"
      + (", BitsAndBytesConfig" if plan.method == "qlora" else ""))
    w("")
    w("from xtuner.dataset import process_hf_dataset")
    w("from xtuner.dataset.collate_fns import default_collate_fn")
    w("from xtuner.dataset.map_fns import template_map_fn_factory")
    w("from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook")
    w("from xtuner.engine.runner import TrainLoop")
    w("from xtuner.model import SupervisedFinetune")
    w("from xtuner.utils import PROMPT_TEMPLATE")
    w("")
    w("#######################################################################")
    w("#                          PART 1  Settings                           #")
    w("#######################################################################")
    w("# Model: the local folder camp resolved (InternLM2 checkpoints are normalised to the Llama layout)")
    w(f"pretrained_model_name_or_path = {_py(str(model_path))}")
    w("")
    w(f"# Data: {n_records} records in XTuner's conversation format ({{\"conversation\": [{{\"input\", \"output\"}}]}}),")
    w("# written by camp.data from your dataset")
    w(f"data_files = {_py(str(data_path))}")
    w("prompt_template = PROMPT_TEMPLATE.internlm2_chat  # <|im_start|>user … <|im_end|>, as the chat models use")
    w(f"max_length = {plan.max_length}  # tokens per example; longer ones are cut")
    w("pack_to_max_length = False  # one example per sequence: the iteration count stays exact")
    w("")
    w("# Scheduler & Optimizer")
    w(f"batch_size = {plan.batch_size}  # per device")
    w(f"accumulative_counts = {plan.grad_accum}  # gradient accumulation: an optimizer step every N batches")
    w("dataloader_num_workers = 0")
    w(f"max_iters = {max_iters}  # {iters_note or 'iterations (one batch each)'}")
    w("optim_type = AdamW")
    w(f"lr = {lr:g}")
    w("betas = (0.9, 0.999)")
    w("weight_decay = 0")
    w("max_norm = 1  # gradient clipping")
    w(f"warmup_iters = {warmup}  # linear warm-up, then cosine decay to 0")
    w("")
    w("# Save (resume from the last one: camp.finetune(..., run_dir=the same folder))")
    w(f"save_steps = {sched['save_every']}")
    w("save_total_limit = 2  # checkpoints kept (-1: all)")
    w("")
    w("# Evaluate: the chat hook answers these questions every evaluation_freq iterations (greedy, as camp.chat)")
    w(f"evaluation_freq = {sched['eval_every']}")
    w(f"SYSTEM = {_py(system)}")
    w(f"evaluation_inputs = {_py(list(evaluation_inputs))}")
    w("")
    w("#######################################################################")
    w("#                      PART 2  Model & Tokenizer                      #")
    w("#######################################################################")
    w("tokenizer = dict(")
    w("    type=AutoTokenizer.from_pretrained,")
    w("    pretrained_model_name_or_path=pretrained_model_name_or_path,")
    w("    trust_remote_code=True,")
    w('    padding_side="right",')
    w(")")
    w("")
    w("model = dict(")
    w("    type=SupervisedFinetune,")
    w(f"    use_activation_checkpointing={plan.grad_checkpointing},  # gradient checkpointing: "
      + ("less memory, ~30% slower" if plan.grad_checkpointing else "off (the plan fits without it)"))
    w("    llm=dict(")
    w("        type=AutoModelForCausalLM.from_pretrained,")
    w("        pretrained_model_name_or_path=pretrained_model_name_or_path,")
    w("        trust_remote_code=True,")
    if cpu or plan.method != "full":
        w(f"        torch_dtype={dtype},"
          + ("  # CPU: float32 (half precision is slow or unsupported there)" if cpu else ""))
    if plan.method == "qlora":
        w("        # QLoRA: the frozen weights in 4-bit NF4 (bitsandbytes, CUDA only)")
        w("        quantization_config=dict(")
        w("            type=BitsAndBytesConfig,")
        w("            load_in_4bit=True,")
        w("            load_in_8bit=False,")
        w("            llm_int8_threshold=6.0,")
        w("            llm_int8_has_fp16_weight=False,")
        w(f"            bnb_4bit_compute_dtype={dtype},")
        w("            bnb_4bit_use_double_quant=True,")
        w('            bnb_4bit_quant_type="nf4",')
        w("        ),")
    w("    ),")
    if lora:
        w("    # LoRA: small trainable matrices beside the frozen weights (r = rank, alpha/r scales them)")
        w("    lora=dict(")
        w("        type=LoraConfig,")
        w(f"        r={plan.lora_r},")
        w(f"        lora_alpha={plan.lora_alpha},")
        w(f"        lora_dropout={0.0 if cpu else 0.1},")
        w('        bias="none",')
        w('        task_type="CAUSAL_LM",')
        if cpu:
            w("        # every linear layer AND the output head: the tiny model cannot learn a new answer through")
            w("        # its frozen head (a regex, see camp/xtuner_compat); GPU configs leave this out (XTuner: all")
            w("        # linear layers but the head)")
            w(f'        target_modules=r"{compat.HEAD_TARGETS}",')
        w("    ),")
    else:
        w("    # full fine-tuning: every weight is trained (no adapter)")
    w(")")
    w("")
    w("#######################################################################")
    w("#                      PART 3  Dataset & Dataloader                   #")
    w("#######################################################################")
    w("train_dataset = dict(")
    w("    type=process_hf_dataset,")
    w('    dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_files)),')
    w("    tokenizer=tokenizer,")
    w("    max_length=max_length,")
    w("    dataset_map_fn=None,  # already in XTuner's conversation format: nothing to map")
    w("    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),")
    w("    remove_unused_columns=True,")
    w("    shuffle_before_pack=True,")
    w("    pack_to_max_length=pack_to_max_length,")
    map_proc = 1 if n_records < 20000 else 8
    w(f"    map_num_proc={map_proc},  # processes for tokenizing; XTuner's default 32 costs ~16 s of start-up on "
      "small sets")
    w(")")
    w("")
    w("train_dataloader = dict(")
    w("    batch_size=batch_size,")
    w("    num_workers=dataloader_num_workers,")
    w("    dataset=train_dataset,")
    if cpu:
        W.extend(_comment(compat.CPU["sampler_comment"], 4))
        w(f"    sampler=dict(type={compat.CPU['sampler']}, shuffle=True),")
    else:
        w("    sampler=dict(type=DefaultSampler, shuffle=True),")
    w("    collate_fn=dict(type=default_collate_fn),")
    w(")")
    w("")
    w("#######################################################################")
    w("#                    PART 4  Scheduler & Optimizer                    #")
    w("#######################################################################")
    if cpu:
        W.extend(_comment(compat.CPU["optim_comment"]))
        w("optim_wrapper = dict(")
        w(f"    type={compat.CPU['optim_wrapper']},")
        w("    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),")
        w("    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),")
        w("    accumulative_counts=accumulative_counts,")
        w(")")
    else:
        w(f"# mixed precision ({plan.dtype}) on the GPU" + (
            f"; `--deepspeed deepspeed.json` ({_planner._zero_title(plan.deepspeed)}) replaces this wrapper"
            if plan.deepspeed else ""))
        w("optim_wrapper = dict(")
        w("    type=AmpOptimWrapper,")
        w("    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),")
        w("    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),")
        w("    accumulative_counts=accumulative_counts,")
        w('    loss_scale="dynamic",')
        w(f'    dtype="{plan.dtype}",')
        w(")")
    w("")
    w("# learning rate: linear warm-up, then cosine decay (by iteration)")
    w("param_scheduler = [")
    w("    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),")
    w("    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),")
    w("]")
    w("")
    w("train_cfg = dict(type=TrainLoop, max_iters=max_iters)")
    w("")
    w("#######################################################################")
    w("#                           PART 5  Runtime                           #")
    w("#######################################################################")
    w("custom_hooks = [")
    w("    dict(type=DatasetInfoHook, tokenizer=tokenizer),  # prints one tokenized example")
    w("    dict(")
    w("        type=EvaluateChatHook,  # the model answers evaluation_inputs while it trains")
    w("        tokenizer=tokenizer,")
    w("        every_n_iters=evaluation_freq,")
    w("        evaluation_inputs=evaluation_inputs,")
    w("        system=SYSTEM,")
    w("        prompt_template=prompt_template,")
    w("        max_new_tokens=256,")
    w("        generation_kwargs=dict(do_sample=False, temperature=None, top_p=None, top_k=None),  # greedy")
    w("    ),")
    w("]")
    w("")
    w("default_hooks = dict(")
    w("    timer=dict(type=IterTimerHook),")
    w(f"    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval={sched['log_every']}),"
      "  # a loss line every N iterations")
    w("    param_scheduler=dict(type=ParamSchedulerHook),")
    w("    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),")
    w("    sampler_seed=dict(type=DistSamplerSeedHook),")
    w(")")
    w("")
    w("env_cfg = dict(")
    w("    cudnn_benchmark=False,")
    w('    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),')
    w(f'    dist_cfg=dict(backend="{compat.CPU["dist_backend"] if cpu else "nccl"}"),')
    w(")")
    w("")
    w("visualizer = None")
    w('log_level = "INFO"')
    w("load_from = None")
    w("resume = False  # camp passes --resume work/iter_N.pth to continue a stopped run")
    w(f"randomness = dict(seed={seed}, deterministic=False)")
    w("log_processor = dict(by_epoch=False)")
    return "\n".join(W) + "\n"


# ============================================================================ the result
@dataclass
class FinetuneResult:
    run_dir: Path
    config_path: Path
    work_dir: Path
    checkpoint: Path | None
    adapter_dir: Path | None
    merged_dir: Path | None
    name: str | None
    base: str
    base_dir: Path
    plan: object
    max_iters: int
    losses: list = field(default_factory=list)  # [(iter, loss)]
    samples: dict = field(default_factory=dict)  # {iter: {question: answer}} from XTuner's chat hook
    seconds: dict = field(default_factory=dict)  # per stage
    resumed_from: list = field(default_factory=list)  # iterations training was resumed from
    reused: bool = False  # True: the run folder held a finished run; nothing was trained

    @property
    def final_answers(self) -> dict:
        return self.samples[max(self.samples)] if self.samples else {}

    def compare(self, questions: list[str] | str | None = None, **gen):
        """Before/after: each question answered by the base model and the fine-tuned one (greedy, camp.chat,
        a fresh conversation per question) → pandas DataFrame (question, before, after)."""
        import pandas as pd

        from camp.conversation import chat

        if self.merged_dir is None:
            raise CampError("this run has no merged model (finetune(..., merge=False)) — nothing to compare")
        if questions is None:
            questions = _read_json(self.run_dir / "run.json").get("evaluation_inputs") or [_identity_question()]
        elif isinstance(questions, str):
            questions = [questions]
        gen = {"temperature": 0, "max_new_tokens": 256, **gen}
        rows = []
        for q in questions:
            before = chat(self.base_dir, **gen).ask(q)
            after = chat(self.merged_dir, **gen).ask(q)
            rows.append({"question": q, "before": before, "after": after})
        return pd.DataFrame(rows, columns=["question", "before", "after"])

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "config_path": str(self.config_path), "work_dir": str(self.work_dir),
            "checkpoint": _s(self.checkpoint), "adapter_dir": _s(self.adapter_dir), "merged_dir": _s(self.merged_dir),
            "name": self.name, "base": self.base, "base_dir": str(self.base_dir), "max_iters": self.max_iters,
            "plan": self.plan.to_dict() if hasattr(self.plan, "to_dict") else self.plan,
            "losses": [list(x) for x in self.losses],
            "samples": {str(k): v for k, v in self.samples.items()},
            "seconds": self.seconds, "resumed_from": self.resumed_from, "reused": self.reused,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneResult:
        p = d.get("plan")
        with contextlib.suppress(TypeError, AttributeError):
            p = _planner.Plan(**{k: v for k, v in p.items() if k != "effective_batch"})
        return cls(run_dir=Path(d["run_dir"]), config_path=Path(d["config_path"]), work_dir=Path(d["work_dir"]),
                   checkpoint=_p(d.get("checkpoint")), adapter_dir=_p(d.get("adapter_dir")),
                   merged_dir=_p(d.get("merged_dir")), name=d.get("name"), base=d.get("base", ""),
                   base_dir=Path(d.get("base_dir", "")), plan=p, max_iters=int(d.get("max_iters", 0)),
                   losses=[tuple(x) for x in d.get("losses", [])],
                   samples={int(k): v for k, v in d.get("samples", {}).items()},
                   seconds=d.get("seconds", {}), resumed_from=d.get("resumed_from", []), reused=d.get("reused", False))

    def __repr__(self) -> str:
        loss = f", final loss {self.losses[-1][1]:.4g}" if self.losses else ""
        return (f"<FinetuneResult {self.name or '(not registered)'}: {self.base} → {self.merged_dir or self.adapter_dir}"
                f", {self.max_iters} iterations{loss}>")

    def _repr_html_(self) -> str:
        from camp.ui.finetune_view import loss_svg

        e = html.escape
        rows = [("registered name", f"<code>{e(self.name)}</code> — <code>camp.chat({e(repr(self.name))})</code>"
                 if self.name else "—"),
                ("base model", f"{e(self.base)} <small>({e(str(self.base_dir))})</small>"),
                ("plan", e(self.plan.headline()) if hasattr(self.plan, "headline") else "—"),
                ("iterations", f"{self.max_iters}" + (f" (resumed from {', '.join(map(str, self.resumed_from))})"
                                                      if self.resumed_from else "")
                 + (" — reused a finished run" if self.reused else "")),
                ("merged model", f"<code>{e(_s(self.merged_dir) or '—')}</code>"),
                ("adapter", f"<code>{e(_s(self.adapter_dir) or '—')}</code>"),
                ("config", f"<code>{e(str(self.config_path))}</code>"),
                ("time", " · ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))]
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                        for k, v in rows)
        answers = "".join(f"<li><b>{e(q)}</b> → {e(a)}</li>" for q, a in self.final_answers.items())
        return (f"<div><b>Fine-tuned {e(self.base)}</b><table>{table}</table>{loss_svg(self.losses)}"
                + (f"<div>Last answers of the chat hook:<ul>{answers}</ul></div>" if answers else "") + "</div>")


def _s(p) -> str | None:
    return str(p) if p is not None else None


def _p(s) -> Path | None:
    return Path(s) if s else None


def _identity_question() -> str:
    from camp.tiny import IDENTITY_QUESTION

    return IDENTITY_QUESTION


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


# ============================================================================ folders: complete or absent
def _mark(folder: Path, info: dict) -> None:
    files = {f.relative_to(folder).as_posix(): f.stat().st_size for f in sorted(folder.rglob("*"))
             if f.is_file() and not f.name.startswith(".")}
    _write_json(folder / MARKER, {**info, "files": files, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def is_complete(folder: Path) -> bool:
    """camp wrote this folder to the end: its marker lists every file with its size."""
    data = _read_json(Path(folder) / MARKER)
    files = data.get("files")
    if not files:
        return False
    for rel, size in files.items():
        try:
            if (Path(folder) / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _tmp_sibling(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _install(tmp: Path, folder: Path) -> None:
    """Put a finished temporary folder in place. An incomplete folder there is ours (a crash): replaced."""
    for old in folder.parent.glob(f".{folder.name}.tmp-*"):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        if is_complete(folder):
            raise CampError(f"{folder} is already complete; camp does not overwrite it")
        shutil.rmtree(folder)
    os.replace(tmp, folder)


# ============================================================================ preparing a run
@dataclass
class _Prepared:
    model: str
    label: str
    records: list
    dataset_label: str
    plan: object
    profile: object
    base_dir: Path | None = None
    seconds: float = 0.0  # spent checking and planning


def _label(model) -> str:
    s = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
    p = Path(s).expanduser()
    if p.is_dir():
        return p.resolve().name
    return s.strip()


def _catalogue_name(model) -> str | None:
    """The catalogue name when `model` names a catalogue entry (plannable without downloading it)."""
    from camp import models

    if isinstance(model, os.PathLike) or Path(str(model)).expanduser().is_dir():
        return None
    s = str(model).strip()
    if s.lower() == "auto":
        return None
    try:
        m = models.get(s)
    except CampError:
        return None
    return m.name if m.in_catalogue else None


def _prepare(model, dataset, *, profile, plan, method, max_length) -> _Prepared:
    """Checks that need no run folder: the dataset (every bad record named), then the plan. Catalogue models are
    planned by name before any download; local folders and registered names are resolved first (instant)."""
    from camp import data, hardware, models

    prof = profile if isinstance(profile, hardware.Profile) else hardware.profile(profile or "auto")
    if isinstance(dataset, (str, os.PathLike)):
        records = data.load(dataset)
        dataset_label = str(Path(dataset).expanduser())
    else:
        records = data.load(list(dataset))
        dataset_label = f"{len(records)} records"
    if not records:
        raise CampError(f"{dataset_label} holds no records — build a dataset first, e.g. camp.data.self_cognition(…)")
    if isinstance(model, str) and model.strip().lower() == "auto":
        model = prof.default_model
    name = _catalogue_name(model)
    base_dir = None
    if name is None:
        base_dir = Path(models.resolve(model, profile=prof))
    label = name or _label(model)
    if plan is None:
        kwargs = {"method": method, "max_length": max_length}
        if prof.device == "cpu":
            kwargs["batch_size"] = CPU_BATCH
        plan = _planner.plan(name or base_dir, records, prof, **kwargs)
    elif not plan.fits:
        raise _planner.PlanError(f"the given plan does not fit: {plan.headline()}", plan)
    return _Prepared(str(model), label, records, dataset_label, plan, prof, base_dir)


def _pid_alive(pid: int, needle: str) -> bool:
    try:
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ProcessLookupError):
        return False
    return needle in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    import fcntl

    with open(run_dir / ".camp-finetune.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampError(f"another camp process is fine-tuning in {run_dir} — wait for it, or use another "
                            "run_dir") from None
        yield


def _xtuner_tool(name: str) -> Path:
    """A file of the installed xtuner package in the xtuner env (found without importing XTuner: ~50 ms)."""
    import subprocess

    from camp import envs

    py = envs.python("xtuner")
    r = subprocess.run([str(py), "-c", "import importlib.util as u; s = u.find_spec('xtuner'); "
                        "print(s.submodule_search_locations[0] if s else '')"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    root = r.stdout.strip()
    if r.returncode != 0 or not root:
        raise CampError(f"XTuner is not installed in the xtuner env ({py}) — run `camp env create xtuner --force`")
    return Path(root) / name


def _env_has(module: str) -> bool:
    import subprocess

    from camp import envs

    r = subprocess.run([str(envs.python("xtuner")), "-c", f"import importlib.util as u; "
                        f"raise SystemExit(0 if u.find_spec({module!r}) else 1)"], capture_output=True, timeout=60)
    return r.returncode == 0


# ============================================================================ finetune()
def finetune(model="auto", dataset=None, *, name: str | None = None, profile=None, plan=None, method: str = "auto",
             max_iters: int | None = None, epochs: float | None = None, lr: float | None = None,
             max_length: int | None = None, run_dir=None, evaluation_inputs: list[str] | None = None,
             show: bool = True, merge: bool = True) -> FinetuneResult:
    """Fine-tune `model` on `dataset` with XTuner; convert, merge and register the result. See the module doc.

    model: catalogue name, registered name, local folder, or "auto" (the profile's default). dataset: a file
    (.jsonl/.json: OpenAI messages, alpaca or XTuner conversation) or a list of records. plan: a camp.plan.Plan
    (default: planned here for the profile; on a CPU with batch 4). max_iters / epochs / lr: default from the
    recipe (cpu-tiny: 400 examples, i.e. 100 iterations at batch 4, lr 1e-2). run_dir: a run folder to create, or to resume (a stopped run continues from its last
    checkpoint; a finished one is returned as it is). evaluation_inputs: the questions XTuner's chat hook asks
    while training (default: the identity question "你是谁？"). merge=False stops after the adapter.
    Returns a FinetuneResult; raises DataError (bad records), PlanError (nothing fits) before anything starts."""
    if dataset is None:
        raise CampError("finetune needs a dataset: a .jsonl file or a list of records, e.g. "
                        "camp.data.self_cognition('小助手', '张三')")
    t0 = time.time()
    prep = _prepare(model, dataset, profile=profile, plan=plan, method=method, max_length=max_length)
    prep.seconds = time.time() - t0
    if show:
        from camp.ui.finetune_view import show_plan

        show_plan(prep.plan)
    return _execute(prep, name=name, max_iters=max_iters, epochs=epochs, lr=lr, run_dir=run_dir,
                    evaluation_inputs=evaluation_inputs, show=show, merge=merge)


finetune.plan = _planner.plan  # `camp.finetune.plan(model, dataset, profile)`, as the course notes write it


def _say(show: bool, msg: str) -> None:
    if show:
        print(msg, file=sys.stderr, flush=True)


def _execute(prep: _Prepared, *, name, max_iters, epochs, lr, run_dir, evaluation_inputs, show, merge
             ) -> FinetuneResult:
    from camp import data, jobs, models

    t_prep = time.time()
    p = prep.plan
    n_iters, iters_note = iterations(p, len(prep.records), max_iters=max_iters, epochs=epochs)
    lr_given = lr is not None
    lr = default_lr(p) if lr is None else float(lr)
    questions = list(evaluation_inputs) if evaluation_inputs else [_identity_question()]
    from camp import envs

    envs.python("xtuner")  # a missing xtuner env is said before any run folder is made
    if p.deepspeed and not _env_has("deepspeed"):
        raise CampError(f"the plan uses DeepSpeed {_planner._zero_title(p.deepspeed)}, which is not installed in the "
                        "xtuner env — add deepspeed to environments/xtuner.txt and `camp env create xtuner`, or plan "
                        "without it: camp.finetune.plan(..., deepspeed=None)")
    if run_dir is None:
        run_dir = jobs.new_run_dir(f"finetune-{prep.label}")
    run_dir = Path(run_dir).expanduser().absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir):
        finished = _read_json(run_dir / "result.json")
        merged, adapter = finished.get("merged_dir"), finished.get("adapter_dir")
        if (merged and is_complete(Path(merged))) or (not merge and adapter and is_complete(Path(adapter))):
            res = FinetuneResult.from_dict(finished)
            res.reused = True
            wanted = name or res.name
            if res.merged_dir is not None and wanted and _registered_path(wanted) != res.merged_dir.resolve():
                # the name was removed meanwhile, or another name is asked for: (re)register, nothing else
                models.register(wanted, res.merged_dir, base=res.base, meta={"run_dir": str(run_dir)})
                res.name = wanted
            _say(show, f"{run_dir} holds a finished run ({res.name or res.adapter_dir}): returning it without "
                       "training again (use another run_dir to train anew)")
            return res
        base_dir = prep.base_dir or Path(models.resolve(prep.model, profile=prep.profile))
        config_path, data_path, work_dir = run_dir / "config.py", run_dir / "data.jsonl", run_dir / "work"
        data_text = "".join(json.dumps(data.to_xtuner(r), ensure_ascii=False) + "\n" for r in prep.records)
        cfg_text = render_config(p, model_path=base_dir, data_path=data_path, n_records=len(prep.records),
                                 max_iters=n_iters, lr=lr, evaluation_inputs=questions, title=run_dir.name,
                                 iters_note=iters_note)
        info = _read_json(run_dir / "run.json")
        started = bool(info) and config_path.is_file() and any(work_dir.glob("iter_*.pth"))
        if started:
            # A started run is defined by its own config.py (the plan's memory budget, say, moves with the free
            # RAM): keep it, but refuse different data or different explicit settings.
            asked = {"max_iters": max_iters, "lr": lr if lr_given else None}
            changed = [k for k, v in asked.items() if v is not None and float(v) != float(info.get(k, v))]
            if epochs is not None and n_iters != info.get("max_iters"):
                changed.append("epochs")
            if _read_text(data_path) != data_text or changed:
                what = ", ".join(changed) or "dataset"
                raise CampError(f"{run_dir} holds a started run with a different {what} — resume it with the same "
                                "data and settings, or pass another run_dir")
            n_iters = int(info["max_iters"])
            base_dir = Path(info.get("base_dir") or base_dir)
            with contextlib.suppress(TypeError, KeyError):
                p = _planner.Plan(**{k: v for k, v in info["plan"].items() if k != "effective_batch"})
        else:
            data_path.write_text(data_text, encoding="utf-8")
            config_path.write_text(cfg_text, encoding="utf-8")
            ds = p.deepspeed_config()
            if ds:
                _write_json(run_dir / "deepspeed.json", ds)
            run_name = name or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}"
            _write_json(run_dir / "run.json", {
                "model": prep.model, "base": prep.label, "base_dir": str(base_dir), "dataset": prep.dataset_label,
                "records": len(prep.records), "name": run_name, "max_iters": n_iters, "iters_note": iters_note,
                "lr": lr, "evaluation_inputs": questions, "plan": p.to_dict(), "profile": prep.profile.name})
        info = _read_json(run_dir / "run.json")
        run_name = name or info.get("name") or f"{_slug(prep.label)}-ft-{_run_id(run_dir)}"
        seconds = dict(_read_json(run_dir / "state.json").get("seconds", {}))
        seconds["prepare"] = round(prep.seconds + time.time() - t_prep, 2)

        # ---------------------------------------------------------------- train
        final = work_dir / f"iter_{n_iters}.pth"
        if _last_checkpoint(work_dir) != final:
            t0 = time.time()
            _train(run_dir, config_path, work_dir, p, n_iters, show)
            seconds["train"] = round(time.time() - t0, 2)
            _save_state(run_dir, seconds=seconds)
        log = parse_log(_read_text(run_dir / "jobs" / "train" / "log.txt"))

        # ---------------------------------------------------------------- convert + merge
        adapter_dir = merged_dir = None
        if p.method == "full":
            merged_dir = run_dir / "merged"
            if not is_complete(merged_dir):
                t0 = time.time()
                _convert(run_dir, config_path, final, merged_dir, p, full=True, base_dir=base_dir, show=show)
                seconds["convert"] = round(time.time() - t0, 2)
        else:
            adapter_dir = run_dir / "adapter"
            if not is_complete(adapter_dir):
                t0 = time.time()
                _convert(run_dir, config_path, final, adapter_dir, p, full=False, base_dir=base_dir, show=show)
                seconds["convert"] = round(time.time() - t0, 2)
            if merge:
                merged_dir = run_dir / "merged"
                if not is_complete(merged_dir):
                    t0 = time.time()
                    _merge(run_dir, base_dir, adapter_dir, merged_dir, p, show=show)
                    seconds["merge"] = round(time.time() - t0, 2)
        registered = None
        if merged_dir is not None:
            models.register(run_name, merged_dir, base=prep.label,
                            meta={"run_dir": str(run_dir), "method": p.method, "iterations": n_iters,
                                  "dataset": prep.dataset_label})
            registered = run_name
        _save_state(run_dir, seconds=seconds)
        result = FinetuneResult(
            run_dir=run_dir, config_path=config_path, work_dir=work_dir, checkpoint=final,
            adapter_dir=adapter_dir, merged_dir=merged_dir, name=registered, base=prep.label, base_dir=base_dir,
            plan=p, max_iters=n_iters, losses=sorted(log.losses.items()), samples=log.samples, seconds=seconds,
            resumed_from=log.resumed_from)
        _write_json(run_dir / "result.json", result.to_dict())
        if show and registered:
            _say(show, f"fine-tuned model: {merged_dir}\nregistered as {registered!r}: camp.chat({registered!r}) "
                       f"or `camp chat {registered}`")
        return result


def _registered_path(name: str) -> Path | None:
    from camp import models

    entry = models.registered().get(name)
    return Path(entry["path"]).resolve() if entry else None


def _slug(s: str) -> str:
    return re.sub(r"[^\w.\-·]+", "-", s, flags=re.UNICODE).strip("-_.") or "model"


def _run_id(run_dir: Path) -> str:
    m = re.match(r"(\d{8}-\d{6})", run_dir.name)
    return m.group(1) if m else _slug(run_dir.name)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _save_state(run_dir: Path, **kw) -> None:
    state = _read_json(run_dir / "state.json")
    state.update(kw)
    _write_json(run_dir / "state.json", state)


def _train(run_dir: Path, config_path: Path, work_dir: Path, p, n_iters: int, show: bool) -> None:
    from camp import envs, xtuner_compat
    from camp.jobs import Job, JobFailed

    state = _read_json(run_dir / "state.json")
    pid = state.get("train_pid")
    if pid and _pid_alive(int(pid), str(config_path)):
        raise CampError(f"an earlier training of this run is still running (pid {pid}) — wait for it to end, or "
                        f"stop it (kill {pid}), then call finetune again")
    py = envs.python("xtuner")
    train_py = _xtuner_tool("tools/train.py")
    resume = _last_checkpoint(work_dir)
    cmd = train_command(py, train_py, config_path, work_dir, p, resume=resume)
    parser = LogParser()
    final = work_dir / f"iter_{n_iters}.pth"

    def check(job) -> str | None:
        parser.close()
        if parser.traceback:
            return f"XTuner raised {parser.error or 'an exception'} (it exited 0 anyway)"
        if _last_checkpoint(work_dir) != final:
            return f"exited 0 but {final.name} is missing: training did not reach iteration {n_iters}"
        return None

    extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
    if p.device == "cpu":
        extra["CUDA_VISIBLE_DEVICES"] = ""  # the plan is for the CPU: XTuner must not pick up a GPU
        extra.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    job = Job(cmd, name="xtuner train", env="xtuner", cwd=run_dir, run_dir=run_dir / "jobs" / "train",
              extra_env=extra, parser=parser, expect=check, total=n_iters, desc="train", unit="it")
    if resume:
        _say(show, f"resuming from {resume.name} (iteration {_ckpt_iter(resume)} of {n_iters})")
    job.start()
    _save_state(run_dir, train_pid=job.pid)
    try:
        if show:
            from camp.ui.finetune_view import follow

            follow(job, parser)
        job.wait()
    except KeyboardInterrupt:
        job.cancel()
        _say(True, f"training stopped at iteration {parser.iter}; call finetune again with run_dir={str(run_dir)!r} "
                   "to resume from the last checkpoint")
        raise
    except JobFailed as exc:
        raise CampError(f"training failed: {job.problem}\n  log: {job.log_path}\n  work dir: {work_dir}") from exc
    finally:
        _save_state(run_dir, train_pid=None)


def train_command(py, train_py, config_path: Path, work_dir: Path, p, *, resume: Path | None = None) -> list[str]:
    """The training command: the env's python running xtuner/tools/train.py (the `xtuner train` CLI would hide a
    failure behind exit status 0); torchrun (`python -m torch.distributed.run`) for several GPUs."""
    if p.num_gpus > 1:
        import random

        cmd = [str(py), "-m", "torch.distributed.run", f"--nproc_per_node={p.num_gpus}",
               f"--master_port={random.randint(20000, 29999)}", str(train_py), str(config_path),
               "--launcher", "pytorch"]
    else:
        cmd = [str(py), str(train_py), str(config_path)]
    cmd += ["--work-dir", str(work_dir)]
    if p.deepspeed:
        cmd += ["--deepspeed", str(Path(config_path).parent / "deepspeed.json")]
    if resume:
        cmd += ["--resume", str(resume)]
    return cmd


def _last_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint mmengine finished saving last: it writes `last_checkpoint` only after the .pth is complete
    (a run killed while saving leaves a partial file that this never points to)."""
    try:
        ck = Path((work_dir / "last_checkpoint").read_text().strip())
    except OSError:
        return None
    return ck if ck.is_file() else None


def _ckpt_iter(path: Path) -> int | None:
    m = re.search(r"iter_(\d+)\.pth$", str(path))
    return int(m.group(1)) if m else None


def _xtuner_cli() -> str:
    from camp import envs

    return str(envs.env_path("xtuner") / "bin" / "xtuner")


def _tool_job(cmd: list[str], *, name: str, run_dir: Path, out: Path, needed: list[str], show: bool, p):
    """Run an `xtuner convert …` command as a Job: success = exit 0, no Traceback, and the needed files in out."""
    from camp import xtuner_compat
    from camp.jobs import Job, JobFailed

    log = ToolLog()

    def check(job) -> str | None:
        if log.traceback:
            return f"{name} raised {log.error or 'an exception'} (the xtuner CLI exits 0 anyway)"
        missing = [f for f in needed if not any(out.glob(f))]
        if missing:
            return f"exited 0 but {', '.join(missing)} missing in {out}"
        return None

    extra = {**xtuner_compat.job_env(), "PYTHONNOUSERSITE": "1"}
    if p.device == "cpu":
        extra["CUDA_VISIBLE_DEVICES"] = ""
    job = Job(cmd, name=name, env="xtuner", cwd=run_dir, run_dir=run_dir / "jobs" / name.split()[-1],
              extra_env=extra, parser=log, expect=check, desc=name)
    _say(show, f"{name}: running (log: {job.log_path})")
    try:
        job.run(show=False)  # no progress to show: one line before, one after
    except JobFailed as exc:
        raise CampError(f"{name} failed: {job.problem}\n  log: {job.log_path}") from exc
    except KeyboardInterrupt:
        job.cancel()
        raise
    _say(show, f"{name}: done in {job.seconds or 0:.1f} s")
    return job


def _convert(run_dir: Path, config_path: Path, checkpoint: Path, out: Path, p, *, full: bool, base_dir: Path,
             show: bool) -> None:
    """`xtuner convert pth_to_hf`: the LoRA adapter (float32: small, exact), or for full fine-tuning the model."""
    tmp = _tmp_sibling(out)
    cmd = [_xtuner_cli(), "convert", "pth_to_hf", str(config_path), str(checkpoint), str(tmp)]
    if not full or p.device == "cpu":
        cmd.append("--fp32")
    cmd.append("--safe-serialization")
    needed = ["config.json", "*.safetensors"] if full else ["adapter_config.json", "adapter_model.safetensors"]
    try:
        _tool_job(cmd, name="xtuner convert", run_dir=run_dir, out=tmp, needed=needed, show=show, p=p)
        if full:
            _keep_chat_files(base_dir, tmp)
        _mark(tmp, {"kind": "model" if full else "adapter", "checkpoint": str(checkpoint)})
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _merge(run_dir: Path, base_dir: Path, adapter_dir: Path, out: Path, p, *, show: bool) -> None:
    """`xtuner convert merge`: base + adapter → a full model folder, written by XTuner's transformers 4.48 (which
    every camp env reads; a transformers 5 save would not load in 4.x)."""
    tmp = _tmp_sibling(out)
    cmd = [_xtuner_cli(), "convert", "merge", str(base_dir), str(adapter_dir), str(tmp),
           "--device", "cpu" if p.device == "cpu" else "cuda", "--safe-serialization"]
    try:
        _tool_job(cmd, name="xtuner merge", run_dir=run_dir, out=tmp,
                  needed=["config.json", "*.safetensors", "tokenizer_config.json"], show=show, p=p)
        _keep_chat_files(base_dir, tmp)
        from camp import models

        problem = models.verify(tmp)
        if problem:
            raise CampError(f"xtuner merge wrote an incomplete model ({problem}); log: {run_dir / 'jobs/merge/log.txt'}")
        _mark(tmp, {"kind": "merged", "base": str(base_dir), "adapter": str(adapter_dir)})
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


CHAT_FILES = ("generation_config.json", "chat_template.jinja", "chat_template.json")


def _keep_chat_files(base_dir: Path, out: Path) -> None:
    """What makes the merged model chat like its base: its generation config (stop tokens) and chat template.
    XTuner's merge keeps them on transformers 4.48; copy any the tool left out, as plain files."""
    for f in CHAT_FILES:
        if (base_dir / f).is_file() and not (out / f).is_file():
            shutil.copy2(base_dir / f, out / f)
    base_cfg = _read_json(base_dir / "tokenizer_config.json")
    out_cfg_path = out / "tokenizer_config.json"
    out_cfg = _read_json(out_cfg_path)
    if base_cfg.get("chat_template") and out_cfg and not out_cfg.get("chat_template") \
            and not (out / "chat_template.jinja").is_file():
        out_cfg["chat_template"] = base_cfg["chat_template"]
        _write_json(out_cfg_path, out_cfg)


# ============================================================================ CLI
def cli_finetune(args) -> int:
    """`camp finetune MODEL DATA [--name N] [--plan-only] [--json] …`"""
    out = sys.stdout
    t0 = time.time()
    prep = _prepare(args.model, args.dataset, profile=args.profile, plan=None, method=args.method,
                    max_length=args.max_length)
    prep.seconds = time.time() - t0
    if args.json and args.plan_only:
        print(json.dumps(prep.plan.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(prep.plan, file=sys.stderr if args.json else out, flush=True)
    if args.plan_only:
        return 0
    result = _execute(prep, name=args.name, max_iters=args.max_iters, epochs=args.epochs, lr=args.lr,
                      run_dir=args.run_dir, evaluation_inputs=None, show=True, merge=True)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    if result.final_answers:
        print("last answers of the chat hook:", file=out)
        for q, a in result.final_answers.items():
            print(f"  {q} → {a}", file=out)
    print(f"merged model: {result.merged_dir}", file=out)
    print(f"registered as: {result.name}   (try: camp chat {result.name} -p \"{_identity_question()}\")", file=out)
    return 0
