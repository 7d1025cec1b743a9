"""Runs inside a tool environment for tests/test_internlm2.py (not a test module itself).

    build PKG_DIR --model DIR[:bias] --tokenizer DIR:VARIANT
            tiny InternLM2 checkpoints with remote code copied from PKG_DIR (xtuner's _lite/modelings/internlm2)
            and an InternLM2-like sentencepiece tokenizer; tokenizer-only folders (variant internlm2 or llama)
    run RESULTS --pair NAME=[ORIG],NORM --tok [SRC=]DST [--control]
            logits (.pt) / greedy generations / tokenizer ids (summary.json), written under RESULTS

Only this environment's transformers is used; results are files the test compares across environments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

LENGTHS = (50, 1000)  # 1000 > max_position_embeddings 512: dynamic-NTK RoPE kicks in
NEW_TOKENS = 12
SPECIALS = [
    "<|plugin|>",
    "<|interpreter|>",
    "<|action_end|>",
    "<|action_start|>",
    "<|im_end|>",
    "<|im_start|>",
]
# InternLM2-chat's template (tokenizer_config.json of internlm/internlm2-chat-1_8b).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXTS = [
    "你好，我是书生·浦语。今天我们一起学习如何微调大模型！",
    "Hello world! This is InternLM2 fine-tuning with XTuner, step 200 of 1000.",
    "使用 XTuner 微调 InternLM2-Chat-1.8B 模型，loss=0.25，学习率 2e-4。",
    "a  b   c\t\td\n\n  e    f     ",
    "   leading and trailing spaces   ",
    "def f(x):\n    if x > 1:\n        return x ** 2\n    return 0\n",
    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n我是助手<|im_end|>\n",
    "<s>hi</s> <|action_start|><|plugin|>{}<|action_end|>",
    "rare: 🙂 ½ ﬁ Ω ∑ ｆｕｌｌ",
    "```python\nprint('```')\n```  ``` x```y",
    "",
]
CONVERSATION = [
    {"role": "system", "content": "你是书生·浦语。"},
    {"role": "user", "content": "Who are you? 你是谁？"},
    {"role": "assistant", "content": "I am InternLM, 书生·浦语."},
    {"role": "user", "content": "  spaces  and\nnewlines "},
]

EN = (
    "the model learns to answer questions about fine tuning evaluation deployment and agents with small data "
    "we train a tokenizer on course text so that every lesson runs on a laptop without a network connection"
).split()
ZH = ["你好", "模型", "微调", "训练", "评测", "部署", "智能体", "书生", "浦语", "数据", "学习", "我们",
      "今天", "一个", "问题", "回答", "中文", "英文", "大模型", "实战营", "工具", "环境"]  # fmt: skip


def corpus(n: int = 3000) -> list[str]:
    rng = random.Random(0)
    lines = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            lines.append(" ".join(rng.choice(EN) for _ in range(rng.randint(5, 15))).capitalize() + ".")
        elif kind == 1:
            lines.append("".join(rng.choice(ZH) for _ in range(rng.randint(4, 12))) + "。")
        elif kind == 2:
            lines.append(
                f"{rng.choice(ZH)} {rng.choice(EN)} {rng.randint(0, 9999)} {rng.choice(ZH)}，{rng.choice(EN)}"
            )
        else:
            lines.append(
                " " * rng.choice([0, 4, 8])
                + f"x_{rng.randint(0, 99)} = f({rng.choice(EN)}, {rng.randint(0, 9)})"
            )
    return lines


def train_tokenizer(out: Path, variant: str) -> None:
    """tokenizer.model + tokenizer_config.json shaped like an InternLM2 download (InternLM2Tokenizer: sentencepiece
    BPE with byte fallback, add_bos_token=True, add_eos_token=False, im tokens as user-defined pieces)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    opts = dict(
        sentence_iterator=iter(corpus()),
        model_writer=model,
        model_type="bpe",
        vocab_size=600,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=0.9995,
        user_defined_symbols=SPECIALS,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    if variant == "internlm2":
        # InternLM2's tokenizer keeps text as is: no NFKC, no dummy prefix, whitespace runs kept; one extra
        # non-special user-defined piece (sentencepiece keeps those whole)
        opts.update(normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
                    allow_whitespace_only_pieces=True, split_digits=True,
                    user_defined_symbols=[*SPECIALS, "```"])  # fmt: skip
    # else sentencepiece's defaults (Llama-like): NFKC, dummy prefix, whitespace runs collapsed
    spm.SentencePieceTrainer.train(**opts)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    special = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    added = {str(i): {"content": sp.id_to_piece(i), **special} for i in range(3)}
    added.update({str(sp.piece_to_id(t)): {"content": t, **special} for t in SPECIALS})
    tok_cfg = {
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "tokenizer_class": "InternLM2Tokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "decode_with_prefix_space": False,
        "model_max_length": 1000000000000000019884624838656,
        "sp_model_kwargs": None,
        "additional_special_tokens": SPECIALS,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, ensure_ascii=False, indent=2))
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "</s>",
                "additional_special_tokens": SPECIALS,
            },
            indent=2,
        )  # fmt: skip
    )


def build(out: Path, pkg: Path, bias: bool) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    for name in ("configuration_internlm2.py", "modeling_internlm2.py"):
        shutil.copy(pkg / name, out / name)
    cfg = {
        "architectures": ["InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "vocab_size": 600,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "attn_implementation": "eager",
        "bias": bias,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    train_tokenizer(out, "internlm2")
    im_end = json.loads((out / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    im_end = next(int(i) for i, v in im_end.items() if v["content"] == "<|im_end|>")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": [2, im_end], "pad_token_id": 2}, indent=2)
    )
    config = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=True, torch_dtype=torch.float32)
    with torch.no_grad():
        # random everything (norm weights too) so a swapped or mis-split tensor changes the logits
        for name, p in model.named_parameters():
            p.copy_((1.0 + 0.2 * torch.randn_like(p)) if "norm" in name else 0.15 * torch.randn_like(p))
    # several shards, as real downloads come
    model.save_pretrained(out, safe_serialization=True, max_shard_size="400KB")
    cfg_saved = json.loads((out / "config.json").read_text())
    assert cfg_saved["model_type"] == "internlm2" and "auto_map" in cfg_saved, cfg_saved


def inputs(vocab: int) -> dict[int, list[int]]:
    rng = random.Random(1)
    return {n: [1] + [rng.randrange(3, vocab) for _ in range(n - 1)] for n in LENGTHS}


def run(results: Path, pairs: list[str], toks: list[str], control: bool) -> None:
    """pairs: "NAME=ORIG,NORM" (ORIG may be empty: only the normalised model is run)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    results.mkdir(parents=True, exist_ok=True)
    summary: dict = {"transformers": transformers.__version__, "generations": {}}
    for pair in pairs:
        name, _, folders = pair.partition("=")
        orig, norm = folders.split(",")
        ids = inputs(json.loads((Path(norm) / "config.json").read_text())["vocab_size"])
        setups = [("norm", norm, {}), ("norm_eager", norm, {"attn_implementation": "eager"})]
        if orig:
            setups.insert(0, ("orig", orig, {"trust_remote_code": True}))
        if control:  # the same model without rope scaling: must differ past 512 positions
            setups.append(("noscale", norm, {"rope_scaling": None, "attn_implementation": "eager"}))
        for tag, folder, kwargs in setups:
            for n, seq in ids.items():
                x = torch.tensor([seq])
                # a fresh model per input: the two dynamic-RoPE codes keep state differently across calls
                model = AutoModelForCausalLM.from_pretrained(
                    folder, torch_dtype=torch.float32, **kwargs
                ).eval()
                if tag != "orig":
                    assert type(model).__name__ == "LlamaForCausalLM", type(model)
                with torch.no_grad():
                    logits = model(x).logits[0]
                torch.save(logits, results / f"{name}_{tag}_{n}.pt")
                if tag == "noscale":
                    continue
                # generating on the same input grows the RoPE length monotonically: same as a fresh model
                gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                                     do_sample=False, pad_token_id=2, eos_token_id=None)  # fmt: skip
                summary["generations"][f"{name}_{tag}_{n}"] = gen[0, len(seq) :].tolist()
    summary["tokenizers"] = {}
    for pair in toks:  # "SRC=DST" compares with the original, "DST" only describes the normalised tokenizer
        src, _, dst = pair.rpartition("=")
        summary["tokenizers"][Path(dst).name] = tokenize(Path(src) if src else None, Path(dst))
    (results / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1))


def tokenize(src: Path | None, dst: Path) -> dict:
    """ids, decodes and chat renders of the normalised fast tokenizer (and of the original, when given)."""
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(dst)
    out: dict = {"class": type(fast).__name__, "norm": describe(fast)}
    if src is not None:
        import sentencepiece as spm
        from transformers import LlamaTokenizer

        # InternLM2Tokenizer (remote code, not installed here) is LlamaTokenizer's legacy path: sentencepiece
        # encode per chunk between added tokens, bos prepended, no eos; sp.decode is its decode of plain pieces.
        slow = LlamaTokenizer.from_pretrained(src, legacy=True)
        sp = spm.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
        out["orig"] = describe(slow)
        out["sp_decode"] = [sp.decode(sp.encode(t)) for t in TEXTS]
    return out


def describe(tok) -> dict:
    return {
        "ids": [tok(t)["input_ids"] for t in TEXTS],
        "ids_plain": [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS],
        "decode": [tok.decode(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS],
        "decode_skip": [tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in TEXTS],
        "chat": tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True),
        "chat_ids": list(
            tok.apply_chat_template(
                CONVERSATION, tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
        ),
        "special": {k: tok.convert_tokens_to_ids(k) for k in ["<s>", "</s>", "<unk>", *SPECIALS]},
        "bos_eos_pad": [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id],
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("pkg", type=Path)
    b.add_argument("--model", action="append", default=[], help="DIR or DIR:bias")
    b.add_argument("--tokenizer", action="append", default=[], help="DIR:VARIANT")
    r = sub.add_parser("run")
    r.add_argument("results", type=Path)
    r.add_argument("--pair", action="append", default=[])
    r.add_argument("--tok", action="append", default=[])
    r.add_argument("--control", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "build":
        for spec in a.model:
            folder, _, kind = spec.partition(":")
            build(Path(folder), a.pkg, bias=kind == "bias")
        for spec in a.tokenizer:
            folder, _, variant = spec.partition(":")
            Path(folder).mkdir(parents=True, exist_ok=True)
            train_tokenizer(Path(folder), variant)
    else:
        run(a.results, a.pair, a.tok, a.control)


if __name__ == "__main__":
    main(sys.argv[1:])
