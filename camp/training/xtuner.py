"""XTuner itself: the recipe's numbers, the config camp writes (laid out like XTuner's own configs and commented
for students), the training command, and reading XTuner's log (progress, loss, the chat hook's samples, a
Traceback).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from camp.runtime.errors import CampError
from camp.training import plan as _planner

# cpu-tiny recipe: LoRA r=64/alpha=16 (the plan's), lr 1e-2 with a cosine schedule, CPU_EXAMPLES examples seen.
# Measured on the first tiny build with camp.data.self_cognition sets for 8 assistant names: 400 examples (100
# iterations at batch 4, 400 at batch 1) made every name exact. The multi-turn tiny (recipe 3) needs more: at 100
# iterations the name "小测" ended at loss 0.94 with "AI 助手" for "人工智能助手"; at 150 it was exact (loss 0.26), for
# the same wall time on 2 cores (start-up, convert and merge dominate).
CPU_EXAMPLES = 600
CPU_LR = 1e-2
CPU_BATCH = 4
# GPU: XTuner's recipes (LoRA/QLoRA lr 2e-4, full 2e-5, 3 epochs). A self-cognition set of a few dozen records
# is far smaller than the 8000-copy sets of the tutorials, so at least GPU_MIN_ITERS micro-batches are run
# (about the optimizer steps of the camp tutorial's run). Not measured here (no GPU): a starting point.
GPU_LR = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
GPU_EPOCHS = 3
GPU_MIN_ITERS = 600
SEED = 0  # fixed: the same run folder and data give the same training


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
        self.peak_memory_mib: float | None = None  # the largest `memory:` (torch max allocated, MiB) logged
        self.traceback = False
        self.error: str | None = None
        self._sample: list[str] | None = None
        self._sample_iter = 0

    def __call__(self, line: str, progress=None) -> None:
        if progress is not None and self.events is not progress.events:
            progress.events.extend(self.events)  # the Job's Progress carries the events to its views from now on
            self.events = progress.events
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
            mem = self.metrics.get("memory")
            if isinstance(mem, float) and "memory:" in it.group(3):
                self.peak_memory_mib = max(self.peak_memory_mib or 0.0, mem)
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
    from camp.training import xtuner_compat as compat

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
            f"; `--deepspeed deepspeed.json` ({_planner.zero_title(plan.deepspeed)}) replaces this wrapper"
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


def train_check(parser, work_dir: Path, n_iters: int):
    """The success check of an XTuner training Job (tools/train.py exits 0 after a Traceback too): no Traceback in
    the log and the final checkpoint `iter_<n_iters>.pth` written."""
    final = work_dir / f"iter_{n_iters}.pth"

    def check(job) -> str | None:
        parser.close()
        if parser.traceback:
            return f"XTuner raised {parser.error or 'an exception'} (it exited 0 anyway)"
        if _last_checkpoint(work_dir) != final:
            return f"exited 0 but {final.name} is missing: training did not reach iteration {n_iters}"
        return None

    return check


def _ckpt_iter(path: Path) -> int | None:
    m = re.search(r"iter_(\d+)\.pth$", str(path))
    return int(m.group(1)) if m else None
