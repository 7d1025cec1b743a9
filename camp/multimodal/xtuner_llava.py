"""XTuner's LLaVA pipeline for a LLaVA folder: the parts XTuner loads, the config it runs, the folder it gives back.

XTuner builds a LLaVA from three pieces — a language model folder, a CLIP vision folder and a projector checkpoint
(`pretrained_pth`) — and trains them with `xtuner train`; `xtuner convert pth_to_hf` writes the trained language
model and projector back out. camp splits a LLaVA folder (tiny-vl, or one fine-tuned from it) into those pieces
(`split`), writes the config (`render_config`, commented for students like XTuner's own), and puts the trained
pieces back into one LLaVA folder in the transformers 4.x layout (`assemble`), which every camp env loads.

The two models compute the same thing: XTuner's LLaVAModel reads the vision tower's hidden states at
`visual_select_layer` without the CLS token (the folder's `vision_feature_layer`, strategy "default"), its
ProjectorModel is Linear-GELU-Linear (`multi_modal_projector.linear_1/linear_2`), and it puts the projected patches
where the prompt's single `<image>` was — where the LLaVA processor puts its expanded image tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from camp.runtime.errors import CampError

LLM_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "chat_template.json")
# folder key prefix → XTuner piece
_LLM, _HEAD, _VISION, _PROJ = "language_model.model.", "language_model.lm_head.", "vision_tower.", "multi_modal_projector."
_PROJ_MAP = {"linear_1.": "model.0.", "linear_2.": "model.2."}  # LLaVA projector → XTuner ProjectorModel


def _json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def split(folder: Path, out: Path) -> dict:
    """Write out/llm (a Llama folder), out/clip (a CLIPVisionModel folder) and out/projector.pth from the LLaVA
    `folder`. Returns {"llm", "clip", "projector"} paths."""
    import torch
    from safetensors.torch import load_file, save_file

    folder, out = Path(folder), Path(out)
    cfg = _json(folder / "config.json")
    if cfg.get("model_type") != "llava":
        raise CampError(f"{folder} is not a LLaVA folder (model_type {cfg.get('model_type')!r})")
    weights = load_file(str(folder / "model.safetensors"))
    llm, clip, proj = out / "llm", out / "clip", out / "projector.pth"
    llm.mkdir(parents=True, exist_ok=True)
    clip.mkdir(parents=True, exist_ok=True)
    text = {**cfg["text_config"], "architectures": ["LlamaForCausalLM"], "torch_dtype": "float32"}
    _write(llm / "config.json", text)
    for f in LLM_FILES:
        shutil.copy2(folder / f, llm / f)
    tcfg = _json(llm / "tokenizer_config.json")
    tcfg.pop("processor_class", None)  # the LLM alone is a plain tokenizer
    _write(llm / "tokenizer_config.json", tcfg)
    lm = {("model." + k[len(_LLM):]): v for k, v in weights.items() if k.startswith(_LLM)}
    lm.update({("lm_head." + k[len(_HEAD):]): v for k, v in weights.items() if k.startswith(_HEAD)})
    save_file(lm, str(llm / "model.safetensors"), metadata={"format": "pt"})
    vision = {**cfg["vision_config"], "architectures": ["CLIPVisionModel"], "torch_dtype": "float32"}
    _write(clip / "config.json", vision)
    shutil.copy2(folder / "preprocessor_config.json", clip / "preprocessor_config.json")
    save_file({k[len(_VISION):]: v for k, v in weights.items() if k.startswith(_VISION)},
              str(clip / "model.safetensors"), metadata={"format": "pt"})
    state = {}
    for k, v in weights.items():
        for ours, theirs in _PROJ_MAP.items():
            if k.startswith(_PROJ + ours):
                state["projector." + theirs + k[len(_PROJ + ours):]] = v.clone()
    torch.save({"state_dict": state}, str(proj))
    return {"llm": llm, "clip": clip, "projector": proj}


def assemble(base: Path, converted: Path, out: Path) -> None:
    """A LLaVA folder in `out`: the config, tokenizer and processor files and the vision tower of `base`, the
    language model and projector that `xtuner convert pth_to_hf` wrote into `converted` (llm at its top,
    projector/ beside it)."""
    from safetensors.torch import load_file, save_file

    base, converted, out = Path(base), Path(converted), Path(out)
    llm_files = sorted(converted.glob("model*.safetensors"))
    proj_files = sorted((converted / "projector").glob("model*.safetensors"))
    if not llm_files or not proj_files:
        raise CampError(f"xtuner convert wrote no language model or projector weights in {converted}")
    llm, proj = {}, {}
    for f in llm_files:
        llm.update(load_file(str(f)))
    for f in proj_files:
        proj.update(load_file(str(f)))
    old = load_file(str(base / "model.safetensors"))
    state = {k: v for k, v in old.items() if k.startswith(_VISION)}
    for k, v in llm.items():
        if k.startswith("model."):
            state[_LLM + k[len("model."):]] = v.float().contiguous()
        elif k.startswith("lm_head."):
            state[_HEAD + k[len("lm_head."):]] = v.float().contiguous()
    for k, v in proj.items():  # ProjectorModel.save_pretrained: model.0.* / model.2.*
        for ours, theirs in _PROJ_MAP.items():
            if k.startswith(theirs):
                state[_PROJ + ours + k[len(theirs):]] = v.float().contiguous()
    missing = sorted(set(old) - set(state))
    if missing:
        raise CampError(f"the converted model lacks {len(missing)} weights of the base (e.g. {missing[0]}) — "
                        f"see {converted}")
    for k, v in old.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CampError(f"{k}: shape {tuple(state[k].shape)} after training, {tuple(v.shape)} in the base")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: state[k] for k in old}, str(out / "model.safetensors"), metadata={"format": "pt"})
    for f in ("config.json", *LLM_FILES, *PROCESSOR_FILES):
        shutil.copy2(base / f, out / f)


# ------------------------------------------------------------------------------------------ the data, tokenized once
# XTuner's LLaVADataset tokenizes the JSON with 32 processes per pass (datasets' map and filter); on 2 cores that is
# ~15 s a pass, several passes, for a few hundred records. This step runs XTuner's own dataset build (what its
# tools/process_untokenized_llava_data.py does) in one process and saves it; train.py then reads it from
# `offline_processed_text_folder`, which the config names.
PREPARE_SCRIPT = '''"""Tokenize the LLaVA data of config.py once (XTuner's dataset build, one process): written by camp."""
import sys

from mmengine import Config

import xtuner.dataset.llava as llava
from xtuner.registry import BUILDER

config, out = sys.argv[1:3]
cfg = Config.fromfile(config)
build = llava.process_hf_dataset
llava.process_hf_dataset = lambda *a, **kw: build(*a, **{**kw, "map_num_proc": 1})
dataset = cfg.train_dataloader.dataset
dataset.offline_processed_text_folder = None  # this step is what writes it
data = BUILDER.build(dataset)
data.text_data.save_to_disk(out)
print(f"[camp] {len(data.text_data)} records tokenized into {out}", flush=True)
'''


# ------------------------------------------------------------------------------------------ the config
def render_config(*, parts: dict, data_path: Path, image_folder: Path, max_iters: int, lr: float,
                  batch_size: int, feature_layer: int, evaluation_image: Path, evaluation_inputs: list[str],
                  tokenized: Path, max_length: int = 256, save_every: int | None = None, log_every: int = 10,
                  eval_every: int | None = None, title: str = "", seed: int = 0) -> str:
    """The XTuner LLaVA config for a CPU run on a LLaVA folder split by `split()` (full fine-tuning of the
    language model and projector, the vision tower frozen), laid out like XTuner's own llava configs."""
    from camp.training import xtuner_compat as compat

    save_every = save_every or max_iters
    eval_every = eval_every or max_iters
    warmup = max(2, round(0.03 * max_iters))  # LinearLR over a single iteration never leaves its start factor
    q = json.dumps
    return f'''# XTuner LLaVA config written by camp{" for " + title if title else ""}.
# 由 camp 生成的 XTuner LLaVA（图文）微调配置：可以直接阅读、修改，并自己运行：
#   xtuner train config.py --work-dir work
# The model is split into XTuner's three pieces: llm/ (the language model), clip/ (the vision tower) and
# projector.pth (the projector, loaded as pretrained_pth), all from the base LLaVA folder.
{compat.BF16_PATCH}
import torch
from mmengine.dataset import {compat.CPU["sampler"]}
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import {compat.CPU["optim_wrapper"]}, CosineAnnealingLR, LinearLR
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel

from xtuner.dataset import LLaVADataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import LLaVAModel
from xtuner.utils import PROMPT_TEMPLATE

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model: the three pieces of the base LLaVA folder
llm_name_or_path = {q(str(parts["llm"]))}
visual_encoder_name_or_path = {q(str(parts["clip"]))}
pretrained_pth = {q(str(parts["projector"]))}  # the trained projector (XTuner would start it from random)

# Data: LLaVA JSON ({{"image": …, "conversations": [{{"from": "human", "value": "<image>\\n…"}}, …]}})
data_path = {q(str(data_path))}
image_folder = {q(str(image_folder))}
# the same data tokenized once by prepare_data.py (XTuner's own build in one process instead of 32)
offline_processed_text_folder = {q(str(tokenized))}
prompt_template = PROMPT_TEMPLATE.internlm2_chat  # the template tiny-vl was built with
max_length = {max_length}  # tokens per example, the image's tokens included

# Scheduler & Optimizer
batch_size = {batch_size}  # per device
accumulative_counts = 1
dataloader_num_workers = 0
max_iters = {max_iters}
optim_type = AdamW
lr = {lr:g}
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # gradient clipping
warmup_iters = {warmup}

# Save
save_steps = {save_every}
save_total_limit = 1

# Evaluate: the chat hook answers these questions about this picture every evaluation_freq iterations
evaluation_freq = {eval_every}
SYSTEM = ""
evaluation_images = {q(str(evaluation_image))}  # a local picture (XTuner's recipe downloads one)
evaluation_inputs = {q(list(evaluation_inputs), ensure_ascii=False)}

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=True,
    padding_side="right",
)

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
    trust_remote_code=True,
)

model = dict(
    type=LLaVAModel,
    # the language model is trained in full: a model this small does not learn new answers through LoRA alone
    freeze_llm=False,
    freeze_visual_encoder=True,  # the vision tower already tells the colours apart
    pretrained_pth=pretrained_pth,
    visual_select_layer={feature_layer},  # the folder's vision_feature_layer
    use_activation_checkpointing=False,  # CPU and a tiny model: memory is not the limit
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        trust_remote_code=True,
        torch_dtype=torch.float32,  # CPU: float32, no BitsAndBytes (4-bit needs CUDA)
    ),
    visual_encoder=dict(
        type=CLIPVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path,
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
llava_dataset = dict(
    type=LLaVADataset,
    data_path=data_path,
    offline_processed_text_folder=offline_processed_text_folder,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    pad_image_to_square=True,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=llava_dataset,
    # {compat.CPU["sampler_comment"]}
    sampler=dict(type={compat.CPU["sampler"]}, shuffle=True),
    collate_fn=dict(type=default_collate_fn),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
# {compat.CPU["optim_comment"]}
optim_wrapper = dict(
    type={compat.CPU["optim_wrapper"]},
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]

train_cfg = dict(type=TrainLoop, max_iters=max_iters)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        image_processor=image_processor,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        evaluation_images=evaluation_images,
        system=SYSTEM,
        prompt_template=prompt_template,
        max_new_tokens=32,
        generation_kwargs=dict(do_sample=False, temperature=None, top_p=None, top_k=None),  # greedy
    ),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval={log_every}),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="{compat.CPU["dist_backend"]}"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed={seed}, deterministic=False)
log_processor = dict(by_epoch=False)
'''
