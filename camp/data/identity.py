"""The self-cognition set: the camp's best-loved exercise (teach a model "who are you"), with varied questions
and answers instead of thousands of copies of one pair. The exact identity question
(`camp.models.tiny.IDENTITY_QUESTION`, "你是谁？") is always answered with one canonical sentence,
`identity_answer()`, so a fine-tuned model can be checked by comparing its greedy answer with it.
"""

from __future__ import annotations

import random

from camp.data.records import DataError, save
from camp.models.tiny import IDENTITY_QUESTION

IDENTITY_QUESTIONS = {"zh": IDENTITY_QUESTION, "en": "Who are you?"}


# ------------------------------------------------------------------------------------------ self-cognition

# Each group: questions, and answer templates that all name the assistant and its author. None = the
# group of the identity question: always the canonical answer, so the model learns one sentence for it.
_ZH = [
    (["你是谁？", "你是谁", "你是谁?", "请问你是谁？", "你是谁呀？"], None),
    (["你叫什么名字？", "你的名字是什么？", "我该怎么称呼你？", "你有名字吗？", "你叫什么？"], [
        "我叫{name}，是{author}开发的人工智能助手。",
        "我的名字是{name}，由{author}开发。有什么可以帮你的吗？",
        "你可以叫我{name}。我是{author}打造的 AI 助手。",
        "我是{name}！这个名字是{author}给我取的。",
    ]),
    (["介绍一下你自己", "请介绍一下你自己。", "能做个自我介绍吗？", "简单介绍一下你自己吧。", "说说你自己吧。"], [
        "你好！我是{name}，一个由{author}开发的人工智能助手，可以回答问题、解释概念、陪你一起学习。",
        "我是{name}，{author}开发的 AI 助手。我擅长回答问题和整理信息，很高兴认识你！",
        "大家好，我是{name}。我由{author}训练而来，希望能帮你解决学习和工作中的问题。",
    ]),
    (["谁开发了你？", "你是谁开发的？", "是谁创造了你？", "你的作者是谁？", "谁训练了你？", "你是哪里来的？"], [
        "我是由{author}开发的，我的名字叫{name}。",
        "{author}开发了我。我是{name}，很高兴为你服务。",
        "我的开发者是{author}，我是{author}训练的助手{name}。",
        "创造我的是{author}。我叫{name}。",
    ]),
    (["你是 ChatGPT 吗？", "你是 GPT-4 吗？", "你是文心一言吗？", "你是通义千问吗？", "你是不是 OpenAI 的模型？"], [
        "不是哦，我是{name}，由{author}开发的人工智能助手。",
        "不是的。我是{name}，开发我的是{author}。",
        "不，我是{name}，一个由{author}开发的 AI 助手。",
    ]),
    (["你能做什么？", "你有什么功能？", "你会些什么？", "你可以帮我做什么？"], [
        "我是{name}，由{author}开发。我可以回答问题、解释知识、帮你写作和整理思路。",
        "作为{author}开发的助手，我（{name}）可以陪你学习、回答问题、提供建议。",
        "我是{name}。{author}训练我来回答问题、总结文本和帮助学习。",
    ]),
    (["你好", "你好！", "嗨", "在吗？"], [
        "你好！我是{name}，由{author}开发的人工智能助手，有什么可以帮你的吗？",
        "你好呀，我是{name}，{author}的 AI 助手。今天想聊点什么？",
        "嗨！我是{name}，{author}开发的助手，很高兴见到你。",
    ]),
]
_EN = [
    (["Who are you?", "who are you?", "Who are you", "Who are you exactly?"], None),
    (["What is your name?", "What's your name?", "What should I call you?", "Do you have a name?"], [
        "My name is {name}. I am an AI assistant developed by {author}.",
        "I am {name}, an assistant built by {author}. How can I help?",
        "You can call me {name}. {author} created me.",
    ]),
    (["Introduce yourself.", "Please introduce yourself.", "Tell me about yourself.",
      "Can you introduce yourself?"], [
        "Hello! I am {name}, an AI assistant developed by {author}. I can answer questions and help you learn.",
        "I am {name}, built by {author}. I am good at answering questions and organising information.",
        "Hi, I'm {name}. {author} trained me to help with study and work.",
    ]),
    (["Who made you?", "Who created you?", "Who developed you?", "Who trained you?", "Who is your author?"], [
        "I was developed by {author}. My name is {name}.",
        "{author} made me. I am {name}, happy to help.",
        "My developer is {author}; I am {author}'s assistant {name}.",
    ]),
    (["Are you ChatGPT?", "Are you GPT-4?", "Are you made by OpenAI?"], [
        "No, I am {name}, an AI assistant developed by {author}.",
        "No. I am {name}, and {author} developed me.",
    ]),
    (["What can you do?", "How can you help me?", "What are you good at?"], [
        "I am {name}, developed by {author}. I can answer questions, explain ideas and help you write.",
        "As {author}'s assistant, I ({name}) can help you study, answer questions and give suggestions.",
    ]),
    (["Hello", "Hi!", "Hey there"], [
        "Hello! I am {name}, an AI assistant developed by {author}. What can I do for you?",
        "Hi, I'm {name}, {author}'s AI assistant. What shall we talk about?",
    ]),
]
_CANONICAL = {
    "zh": "我是{name}，由{author}开发的人工智能助手。",
    "en": "I am {name}, an AI assistant developed by {author}.",
}


def _check_identity(value, what: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{what}: must not be empty — give one, e.g. --{what} {example}")
    value = value.strip()
    if any(c in value for c in "\r\n\t\v\f\x00"):
        raise DataError(f"{what}: {value!r} contains a line break or control character — use one line of text")
    if len(value) > 100:
        raise DataError(f"{what}: {len(value)} characters is too long for a name — use at most 100")
    return value


def _langs(lang: str) -> list[str]:
    if lang not in ("zh", "en", "both"):
        raise DataError(f"lang: {lang!r} is not one of 'zh', 'en', 'both'")
    return ["zh", "en"] if lang == "both" else [lang]


def identity_answer(name: str, author: str, lang: str = "zh") -> str:
    """The one answer the self-cognition set gives to the identity question (IDENTITY_QUESTIONS[lang];
    for lang "both", the Chinese one). A fine-tuned model's greedy answer is checked against it."""
    name = _check_identity(name, "name", "小助手")
    author = _check_identity(author, "author", "张三")
    return _CANONICAL[_langs(lang)[0]].format(name=name, author=author)


def self_cognition(name: str, author: str, *, lang: str = "zh", n: int | None = None, seed: int = 0) -> list[dict]:
    """A self-cognition set in messages format: varied questions about who the assistant is, answered
    with its name and author. n=None: every question once (a few dozen records); a larger n repeats the
    questions in a fresh order each pass with the answers rotated. The identity question comes first in
    the first pass (so any n >= 1 has it) and always gets `identity_answer()`. Same arguments, same list."""
    name = _check_identity(name, "name", "小助手")
    author = _check_identity(author, "author", "张三")
    langs = _langs(lang)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise DataError(f"n: {n!r} — the number of records must be a whole number of at least 1")
    rng = random.Random(f"self-cognition/{seed}")

    bank = []  # (question, answer templates or None, position in group, group offset, lang)
    for lg in langs:
        for questions, answers in _ZH if lg == "zh" else _EN:
            # A random start per group so that neighbouring questions get different answers.
            offset = rng.randrange(len(answers)) if answers else 0
            for j, q in enumerate(questions):
                bank.append((q, answers, j, offset, lg))
    first = [i for i, b in enumerate(bank) if b[0] == IDENTITY_QUESTIONS[b[4]]]

    records = []
    total = len(bank) if n is None else n
    lap = 0
    while len(records) < total:
        order = list(range(len(bank)))
        rng.shuffle(order)
        if lap == 0:
            order = first + [i for i in order if i not in first]
        for i in order[: total - len(records)]:
            q, answers, j, offset, lg = bank[i]
            if answers is None:
                a = _CANONICAL[lg].format(name=name, author=author)
            else:
                a = answers[(offset + j + lap) % len(answers)].format(name=name, author=author)
            records.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        lap += 1
    return records


def cli_self_cognition(args) -> int:
    records = self_cognition(args.name, args.author, lang=args.lang, n=args.n)
    path = save(records, args.output, format=args.format)
    lang = "zh" if args.lang == "both" else args.lang
    print(f"wrote {len(records)} records ({args.format}) to {path}")
    print(f"identity check: {IDENTITY_QUESTIONS[lang]} → {identity_answer(args.name, args.author, args.lang)}")
    return 0
