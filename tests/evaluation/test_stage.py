"""camp.evaluate / camp eval: course sets, custom files, the OpenCompass config, judging the run from its files,
and real OpenCompass runs on the tiny model (local folders and an OpenAI-compatible endpoint) on CPU."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

import camp.evaluation.datasets as _datasets
import camp.evaluation.opencompass as _opencompass
import camp.evaluation.result as _result
import camp.evaluation.stage as _stage
import camp.evaluation.targets as _targets
from camp.data.records import DataError
from camp.runtime.errors import CampError
from tests.conftest import ROOT, subprocess_env, tool_env_python

NAME, AUTHOR = "小助手", "实战营"


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n"
                            for x in lines), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =========================================================================== course sets


def test_course_sets_are_listed_with_what_they_score():
    sets = {d["name"]: d for d in _datasets.list_datasets()}
    assert set(sets) == {"self_cognition_check", "internlm_toolchain_mcq"}
    assert sets["internlm_toolchain_mcq"]["metric"] == "accuracy"
    assert sets["self_cognition_check"]["metric"] == "contains" and sets["self_cognition_check"]["needs_name"]
    for d in sets.values():
        assert Path(d["path"]).is_file() and d["description"]


def test_toolchain_mcq_is_a_valid_bilingual_four_choice_set():
    kind, records, options = _datasets.load_questions(ROOT / "assets/datasets/internlm_toolchain_mcq.jsonl")
    assert kind == "mcq" and options == ["A", "B", "C", "D"]
    assert 20 <= len(records) <= 40
    assert len({r["question"] for r in records}) == len(records)
    zh = [r for r in records if re.search(r"[\u4e00-\u9fff]", r["question"])]
    assert len(zh) >= 10 and len(records) - len(zh) >= 5  # Chinese and English
    for r in records:
        assert len({r[o] for o in options}) == 4, r  # four different options
    # the key is spread over the letters: a model always answering one letter cannot pass
    counts = {o: sum(r["answer"] == o for r in records) for o in options}
    assert max(counts.values()) <= len(records) / 2, counts
    text = " ".join(r["question"] + " " + r[r["answer"]] for r in records)
    for topic in ("XTuner", "LMDeploy", "OpenCompass", "Lagent", "MinerU", "书生万卷", "InternLM"):
        assert topic in text


def test_self_cognition_check_holds_the_questions_the_fine_tune_trains_on(tmp_path):
    from camp import data

    template = [json.loads(x) for x in (ROOT / "assets/datasets/self_cognition_check.jsonl").read_text(
        encoding="utf-8").splitlines() if x.strip()]
    trained = {r["messages"][0]["content"] for r in data.self_cognition(NAME, AUTHOR, lang="both")}
    seen = [r["question"] for r in template if r["seen"]]
    unseen = [r["question"] for r in template if not r["seen"]]
    assert set(data.IDENTITY_QUESTIONS.values()) <= set(seen)
    assert set(seen) <= trained, set(seen) - trained  # if camp.data's questions change, this set must follow
    assert unseen and not set(unseen) & trained  # new phrasings too
    records = _datasets.resolve_datasets([f"self_cognition_check:{NAME}"])[0].records
    assert [r["question"] for r in records] == [r["question"] for r in template]
    assert {r["answer"] for r in records} == {NAME}
    path = _datasets.self_cognition_check("Bot 7", path=tmp_path / "check.jsonl")
    kind, recs, _ = _datasets.load_questions(path)
    assert kind == "qa" and recs[0] == {"question": "你是谁？", "answer": "Bot 7"}


def test_self_cognition_check_asks_for_the_name():
    with pytest.raises(CampError, match="assistant_name"):
        _datasets.resolve_datasets(["self_cognition_check"])
    spec = _datasets.resolve_datasets(["self_cognition_check"], assistant_name="Ada")[0]
    assert spec.kind == "qa" and spec.records[0]["answer"] == "Ada"
    with pytest.raises(CampError, match="one line"):
        _datasets.resolve_datasets(["self_cognition_check"], assistant_name="a\nb")


# =========================================================================== custom files


def test_custom_mcq_and_qa_files_in_jsonl_and_csv(tmp_path):
    mcq = write(tmp_path / "quiz.jsonl", [
        {"question": "1+1=?", "A": "1", "B": 2, "C": "3", "D": "4", "answer": "b", "source": "me"},
        {"question": "2+2=?", "A": "4", "B": "5", "C": "6", "D": "7", "answer": " A "},
    ])
    kind, records, options = _datasets.load_questions(mcq)
    assert kind == "mcq" and options == list("ABCD")
    assert records[0] == {"question": "1+1=?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B"}
    assert records[1]["answer"] == "A"

    csv_file = tmp_path / "quiz.csv"
    csv_file.write_bytes("\ufeffquestion,A,B,C,answer\n\"Who, me?\",yes,no,maybe,A\n\n猫是?,动物,植物,矿物,a\n"
                         .encode("utf-8"))
    kind, records, options = _datasets.load_questions(csv_file)
    assert kind == "mcq" and options == ["A", "B", "C"] and len(records) == 2
    assert records[0]["question"] == "Who, me?" and records[1]["answer"] == "A"

    qa = write(tmp_path / "qa.jsonl", [{"question": "首都？", "answer": "北京"},
                                       {"question": "颜色？", "answer": ["红", "red"]}])
    kind, records, _ = _datasets.load_questions(qa)
    # one column type for OpenCompass's Arrow table: all lists once any answer is a list
    assert kind == "qa" and records == [{"question": "首都？", "answer": ["北京"]},
                                        {"question": "颜色？", "answer": ["红", "red"]}]
    specs = _datasets.resolve_datasets([mcq, str(qa), csv_file])
    assert [s.name for s in specs] == ["quiz", "qa", "quiz-2"]  # unique names for the table
    assert [s.kind for s in specs] == ["mcq", "qa", "mcq"]


def test_malformed_datasets_name_file_line_and_field(tmp_path):
    bad = write(tmp_path / "bad.jsonl", [
        {"question": "ok?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"},
        {"question": "", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"},
        '{"question": "broken", "A": ',
        {"question": "q", "A": "a", "B": "b", "C": "c", "answer": "E"},
        "",
        {"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": "A"},
    ])
    with pytest.raises(DataError) as exc:
        _datasets.load_questions(bad)
    problems = exc.value.problems
    assert f"{bad}:2: field 'question': missing or empty" in problems
    assert any(p.startswith(f"{bad}:3: invalid JSON") for p in problems)
    assert f"{bad}:4: field 'D': missing or empty option" in problems
    assert f"{bad}:4: field 'answer': 'E' is not one of A, B, C, D" in problems
    assert any(p.startswith(f"{bad}:6: field 'E'") for p in problems)
    assert len(problems) == 5

    qa = write(tmp_path / "qa.jsonl", [{"question": "a", "answer": ""}, {"question": "b", "answer": ["x", ""]}])
    with pytest.raises(DataError, match=r"qa.jsonl:1: field 'answer'"):
        _datasets.load_questions(qa)
    weird = write(tmp_path / "weird.jsonl", [{"prompt": "x", "completion": "y"}])
    with pytest.raises(DataError, match=r"weird.jsonl:1: neither a multiple-choice .* keys: 'prompt', 'completion'"):
        _datasets.load_questions(weird)
    short = tmp_path / "short.csv"
    short.write_text("question,A,B,answer\nq,a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"short.csv:2: has 3 cells, the header has 4"):
        _datasets.load_questions(short)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        _datasets.load_questions(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="no such file"):
        _datasets.resolve_datasets([tmp_path / "missing.jsonl"])
    with pytest.raises(DataError, match=r"\.jsonl .* or a \.csv"):
        _datasets.load_questions(write(tmp_path / "x.txt", ["hello"]))


def test_unknown_dataset_names_suggest_the_course_set():
    with pytest.raises(CampError, match="did you mean internlm_toolchain_mcq"):
        _datasets.resolve_datasets(["internlm_toolchain-mcq"])


def test_opencompass_dataset_names_need_their_data(tmp_path, monkeypatch):
    pkg = tmp_path / "opencompass"
    cfg_dir = pkg / "configs" / "datasets" / "toy"
    cfg_dir.mkdir(parents=True)
    (pkg / "utils").mkdir()
    (pkg / "utils" / "datasets_info.py").write_text(
        'DATASETS_MAPPING = {"opencompass/toy": {"ms_id": None, "hf_id": None, "local": "./data/toy/"}}\n')
    (cfg_dir / "toy_gen_abc.py").write_text("toy_datasets = [dict(abbr='toy', path='opencompass/toy')]\n")
    (cfg_dir / "toy_gen.py").write_text("from mmengine.config import read_base\n\nwith read_base():\n"
                                        "    from .toy_gen_abc import toy_datasets  # noqa\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("COMPASS_DATA_CACHE", str(cache))
    monkeypatch.delenv("DATASET_SOURCE", raising=False)
    with pytest.raises(CampError) as exc:
        _datasets.opencompass_dataset("toy_gen", pkg)
    msg = str(exc.value)
    assert f"needs its data at {cache}/data/toy" in msg and "COMPASS_DATA_CACHE" in msg and "OpenCompassData" in msg
    (cache / "data" / "toy").mkdir(parents=True)
    spec = _datasets.opencompass_dataset("toy_gen", pkg)
    assert spec.oc_module == "opencompass.configs.datasets.toy.toy_gen"
    assert spec.oc_vars == ["toy_datasets"] and spec.data_root == str(cache)
    with pytest.raises(CampError, match="no OpenCompass dataset config toy_gne.py.*toy_gen"):
        _datasets.opencompass_dataset("toy_gne", pkg)


# =========================================================================== the config file


def _specs(tmp_path):
    tiny_dir = tmp_path / "tiny"
    local = _targets.ModelSpec(name="tiny", kind="local", abbr="tiny", path=str(tiny_dir), weights_gb=0.01)
    remote = _targets.ModelSpec(name="my-ft", kind="local", abbr="my-ft", path=str(tmp_path / "ft"), remote_code=True)
    endpoint = _targets.ModelSpec(name="endpoint:tiny", kind="endpoint", abbr="endpoint_tiny", path=str(tiny_dir),
                            base_url="http://127.0.0.1:23333/v1", api_key="sk-secret", tokenizer=str(tiny_dir))
    mcq = _datasets.DatasetSpec(name="quiz", kind="mcq", source="q", options=list("ABCD"),
                         records=[{"question": f"q{i}", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"}
                                  for i in range(5)])
    qa = _datasets.DatasetSpec(name="self_cognition_check", kind="qa", source="s",
                        records=[{"question": "你是谁？", "answer": NAME}] * 3)
    oc = _datasets.DatasetSpec(name="ceval_gen", kind="opencompass", source="ceval_gen",
                        oc_module="opencompass.configs.datasets.ceval.ceval_gen", oc_vars=["ceval_datasets"],
                        data_root=str(tmp_path / "ocdata"))
    return [local, remote, endpoint], [mcq, qa, oc]


def _exec_config(path: Path, monkeypatch) -> dict:
    """Run config.py with stand-ins for mmengine/opencompass (not in the core env): the dicts it builds."""
    class Stub:
        def __init__(self, name):
            self.__name__ = name

    mods = {"mmengine": types.ModuleType("mmengine"), "mmengine.config": types.ModuleType("mmengine.config"),
            "opencompass": types.ModuleType("opencompass"), "opencompass.models": types.ModuleType("x"),
            "camp_scoring": types.ModuleType("camp_scoring")}
    mods["opencompass.models"].HuggingFacewithChatTemplate = Stub("HuggingFacewithChatTemplate")
    mods["opencompass.models"].OpenAISDK = Stub("OpenAISDK")
    mods["camp_scoring"].ContainsEvaluator = Stub("ContainsEvaluator")
    mods["mmengine.config"].read_base = None
    for k, v in mods.items():
        monkeypatch.setitem(sys.modules, k, v)
    ns: dict = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), ns)
    return ns


def test_config_on_cpu_is_readable_and_complete(tmp_path, monkeypatch):
    models, datasets = _specs(tmp_path)
    s = _opencompass.settings("cpu-tiny")
    assert (s.device, s.num_gpus, s.debug, s.dtype) == ("cpu", 0, True, "float32")
    cfg = _opencompass.write_config(tmp_path, models, datasets[:2], s, limit=2)
    text = cfg.read_text(encoding="utf-8")
    ast.parse(text)
    assert "--debug" in text and "sk-secret" not in text  # the key travels in the environment, not the file
    assert (tmp_path / "camp_scoring.py").is_file()
    assert len((tmp_path / "data" / "quiz.jsonl").read_text().splitlines()) == 2  # limit
    ns = _exec_config(cfg, monkeypatch)
    tiny, remote, endpoint = ns["models"]
    assert tiny["type"].__name__ == "HuggingFacewithChatTemplate" and tiny["path"] == models[0].path
    assert tiny["model_kwargs"] == {"device_map": "cpu", "torch_dtype": "float32"}
    assert tiny["run_cfg"] == {"num_gpus": 0} and tiny["generation_kwargs"] == {"do_sample": False}
    # remote modelling code of InternLM2's age: no KV cache on transformers 4.57 (FACTS)
    assert remote["generation_kwargs"]["use_cache"] is False and remote["model_kwargs"]["trust_remote_code"]
    assert endpoint["type"].__name__ == "OpenAISDK" and endpoint["key"] == "ENV"
    assert endpoint["tokenizer_path"] == models[2].tokenizer and endpoint["openai_api_base"].endswith("/v1")
    quiz, sc = ns["datasets"]
    assert quiz == {"abbr": "quiz", "path": str(tmp_path / "data" / "quiz.jsonl"), "data_type": "mcq",
                    "infer_method": "gen"}
    assert sc["data_type"] == "qa" and sc["evaluator"].__name__ == "ContainsEvaluator"
    assert ns["work_dir"] == str(tmp_path / "outputs")
    env = _opencompass.run_environment(tmp_path, models, datasets, s)
    assert env["OPENAI_API_KEY"] == "sk-secret" and env["PYTHONPATH"] == str(tmp_path)
    assert "127.0.0.1" in env["NO_PROXY"] and env["COMPASS_DATA_CACHE"] == str(tmp_path / "ocdata")


def test_config_imports_opencompass_datasets_and_limits_them(tmp_path):
    models, datasets = _specs(tmp_path)
    other = _datasets.DatasetSpec(name="ceval_ppl", kind="opencompass", source="ceval_ppl",
                           oc_module="opencompass.configs.datasets.ceval.ceval_ppl", oc_vars=["ceval_datasets"])
    text = _opencompass.write_config(tmp_path, models[:1], [datasets[2], other], _opencompass.settings("cpu-tiny"), limit=5).read_text()
    ast.parse(text)
    # the same variable name from two configs gets an alias each
    assert "from opencompass.configs.datasets.ceval.ceval_gen import ceval_datasets as ceval_gen__ceval_datasets" in text
    assert "*ceval_ppl__ceval_datasets," in text
    assert "for _d in ceval_gen__ceval_datasets:\n    _d['reader_cfg']['test_range'] = '[0:5]'" in text
    assert "camp_scoring" not in text  # no QA set, no scorer


def test_gpu_profiles_set_dtype_batch_and_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("CAMP_PROFILE", raising=False)
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24")
    s = _opencompass.settings("auto")
    assert (s.profile, s.device, s.dtype, s.num_gpus, s.workers, s.debug) == ("gpu-24g", "cuda", "bfloat16", 1, 1, True)
    assert s.batch_size > _opencompass.settings("cpu-tiny").batch_size
    monkeypatch.setenv("CAMP_FAKE_GPUS", "80,80")
    s = _opencompass.settings("auto")
    assert (s.profile, s.workers, s.debug) == ("gpu-80g-x2", 2, False)
    models, datasets = _specs(tmp_path)
    text = _opencompass.write_config(tmp_path, models[:1], datasets[:1], s).read_text()
    assert "--max-num-workers 2" in text and "device_map='auto'" in text and "torch_dtype='bfloat16'" in text
    assert "run_cfg=dict(num_gpus=1)" in text
    # a model bigger than one GPU gets several, and one that fits nowhere is refused before anything runs
    monkeypatch.setenv("CAMP_FAKE_GPUS", "24,24")
    big = _targets.ModelSpec(name="big", kind="local", path="/x", weights_gb=30)
    assert (_opencompass.settings("auto", [big]).num_gpus, _opencompass.settings("auto", [big]).workers) == (2, 1)
    huge = _targets.ModelSpec(name="huge", kind="local", path="/x", weights_gb=100)
    with pytest.raises(CampError, match="huge needs about 120 GB"):
        _opencompass.settings("auto", [huge])


# =========================================================================== scoring, summary, judging


def test_qa_scorer_counts_replies_that_contain_the_answer():
    base = types.ModuleType("opencompass.openicl.icl_evaluator")
    base.BaseEvaluator = object
    saved = {k: sys.modules.get(k) for k in ("opencompass", "opencompass.openicl", base.__name__)}
    sys.modules.update({"opencompass": types.ModuleType("opencompass"),
                        "opencompass.openicl": types.ModuleType("opencompass.openicl"), base.__name__: base})
    try:
        ns: dict = {}
        exec(_opencompass.SCORING_SOURCE, ns)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    score = ns["ContainsEvaluator"]().score
    out = score(["我是小助手，由实战营开发。", "I'm Xiao Zhu-Shou!", "我是书生·浦语 tiny", "", "红色"],
                ["小助手", "xiao zhushou", "小助手", "小助手", ["蓝", "红"]])
    assert [d["correct"] for d in out["details"]] == [True, True, False, False, True]
    assert out["contains"] == 60.0
    assert score(["x"], [""])["contains"] == 0.0  # an empty reference never matches everything


def test_summary_parser_keeps_dashes_as_missing(tmp_path):
    f = tmp_path / "summary_1.csv"
    f.write_text("dataset,version,metric,mode,tiny,endpoint_tiny\nquiz,abc123,accuracy,gen,40.00,-\n"
                 "self_cognition_check,def456,contains,gen,0.00,12.50\n", encoding="utf-8")
    table, missing = _opencompass.parse_summary(f, {"endpoint_tiny": "endpoint:tiny"})
    assert list(table.columns) == ["model", "dataset", "metric", "score"]
    assert table.loc[(table.model == "tiny") & (table.dataset == "quiz"), "score"].item() == 40.0
    assert table.loc[(table.model == "endpoint:tiny") & (table.dataset == "self_cognition_check"),
                     "score"].item() == 12.5
    assert missing == [("endpoint:tiny", "quiz", "accuracy")]
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CampError, match="not an OpenCompass summary"):
        _opencompass.parse_summary(bad)


def test_a_dash_or_missing_predictions_is_a_failure_not_a_zero(tmp_path):
    exp = tmp_path / "outputs" / "20260101_120000"
    (exp / "predictions" / "tiny").mkdir(parents=True)
    (exp / "predictions" / "broken").mkdir(parents=True)
    (exp / "predictions" / "tiny" / "quiz.json").write_text('{"0": {"prediction": "A", "gold": "A"}}')
    (exp / "predictions" / "tiny" / "quiz_1_0.json").write_text("{}")  # quiz_1 split over two workers
    (exp / "predictions" / "tiny" / "quiz_1_1.json").write_text("{}")
    (exp / "predictions" / "tiny" / "tmp_quiz_2.json").write_text("{}")
    (exp / "summary").mkdir()
    (exp / "summary" / "summary_20260101_120000.csv").write_text(
        "dataset,version,metric,mode,tiny,broken\nquiz,1,accuracy,gen,50.00,-\nquiz_1,1,accuracy,gen,25.00,-\n")
    assert _opencompass.latest_experiment(tmp_path / "outputs") == exp
    assert _opencompass.latest_experiment(tmp_path / "outputs", before={exp.name}) is None
    parts = _opencompass.prediction_files(exp, {"quiz", "quiz_1"})
    assert parts["tiny"]["quiz"] == [exp / "predictions/tiny/quiz.json"]
    assert [p.name for p in parts["tiny"]["quiz_1"]] == ["quiz_1_0.json", "quiz_1_1.json"]
    models = [_targets.ModelSpec(name="tiny", kind="local", abbr="tiny"), _targets.ModelSpec(name="broken", kind="local",
                                                                                 abbr="broken")]
    datasets = [_datasets.DatasetSpec(name="quiz", kind="mcq", source="x"), _datasets.DatasetSpec(name="quiz_1", kind="mcq",
                                                                                   source="y")]
    problems, summary, table, failed = _stage._judge(exp, models, datasets)
    assert problems == ["broken on quiz: no predictions (inference failed)",
                        "broken on quiz_1: no predictions (inference failed)"]
    assert failed == [("broken", "quiz"), ("broken", "quiz_1")]
    assert table[table.model == "broken"].score.isna().all()
    # predictions present but '-' in the summary (the scoring failed): still a failure
    (exp / "predictions" / "broken" / "quiz.json").write_text("{}")
    (exp / "predictions" / "broken" / "quiz_1.json").write_text("{}")
    problems, *_ = _stage._judge(exp, models, datasets)
    assert problems == ["broken on quiz: no accuracy in the summary ('-')",
                        "broken on quiz_1: no accuracy in the summary ('-')"]
    problems, *_ = _stage._judge(None, models, datasets)
    assert "did not start" in problems[0]


def test_relevant_log_lines_are_the_error_not_the_traceback_code():
    log = "\n".join([
        "11/23 17:15:59 - OpenCompass - INFO - Task [tiny/quiz]",
        "11/23 17:15:59 - OpenCompass - WARNING - SlurmRunner is not used, so the partition argument is ignored.",
        "Inferencing:  0%| | 0/8 [00:00<?, ?it/s]\x1b[A11/23 17:15:59 - OpenCompass - ERROR - /x/openai_api.py - "
        "_generate - 952 - error occurs at http://127.0.0.1:1/v1",
        "11/23 17:16:00 - OpenCompass - ERROR - /x/openai_api.py - _generate - 952 - error occurs at http://127.0.0.1:1/v1",
        "Traceback (most recent call last):",
        '  File "/x/y.py", line 3, in f',
        "    raise RuntimeError(",
        "RuntimeError: Error(s) in loading state_dict for Linear:",
        "\tsize mismatch for weight: copying a param with shape [1, 64], the shape in current model is [1, 96].",
        "[camp] failed: exit status 1",
    ])
    assert _opencompass.relevant_lines(log) == [
        "OpenCompass ERROR: error occurs at http://127.0.0.1:1/v1",
        "RuntimeError: Error(s) in loading state_dict for Linear:",
        "size mismatch for weight: copying a param with shape [1, 64], the shape in current model is [1, 96].",
    ]


def test_progress_counts_questions_answered():
    from camp.runtime.jobs import Progress

    parse = _opencompass.EvalProgress({("tiny", "quiz"): 10, ("tiny", "sc"): 4, ("ft", "quiz"): 10}, {"ft": "my-ft"})
    p = Progress(total=24)
    for line in ["11/23 - OpenCompass - INFO - Start inferencing [tiny/quiz]",
                 "Map: 100%|██████████| 10/10 [00:00<00:00, 843.87 examples/s]",
                 " 50%|█████     | 1/2 [00:00<00:00,  3.34it/s]"]:
        parse(line, p)
    assert p.n == 5 and p.desc == "tiny · quiz"
    parse("INFO - Start inferencing [tiny/sc]", p)
    parse("Inferencing: 100%|██████████| 8/8 [00:00<00:00, 17.77it/s]", p)  # an API model's inner bar
    assert p.n == 10
    parse("100%|██████████| 1/1 [00:01<00:00,  1.89s/it]", p)
    assert p.n == 14
    parse("INFO - Start inferencing [ft/quiz]", p)
    assert p.n == 14 and p.desc == "my-ft · quiz"
    parse("INFO - Running 0-th replica of evaluation", p)
    assert p.n == 24 and p.desc == "scoring"


# =========================================================================== refused before OpenCompass starts


@pytest.fixture
def no_opencompass(monkeypatch):
    """Any attempt to start OpenCompass fails the test."""
    import camp.runtime.jobs

    class NoJob:
        def __init__(self, *a, **k):
            raise AssertionError("OpenCompass was started although the input was invalid")

    monkeypatch.setattr(camp.jobs, "Job", NoJob)


def test_malformed_dataset_and_missing_models_are_refused_before_opencompass(tmp_path, no_opencompass):
    import camp.models.tiny

    camp.tiny.ensure()
    bad = write(tmp_path / "mine.jsonl", [{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "Z"}])
    with pytest.raises(DataError, match=re.escape(f"{bad}:1: field 'answer': 'Z' is not one of A, B, C, D")):
        _stage.evaluate(["tiny"], [bad], show=False)
    with pytest.raises(CampError, match="no model folder at"):
        _stage.evaluate([str(tmp_path / "no-such-model")], ["internlm_toolchain_mcq"], show=False)
    with pytest.raises(CampError, match="did you mean tiny"):
        _stage.evaluate(["tinny"], ["internlm_toolchain_mcq"], show=False)
    incomplete = tmp_path / "half"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    with pytest.raises(CampError, match="incomplete: no weight file"):
        _stage.evaluate([str(incomplete)], ["internlm_toolchain_mcq"], show=False)
    port = free_port()
    with pytest.raises(CampError, match=rf"endpoint http://127.0.0.1:{port}/v1 is not reachable"):
        _stage.evaluate([f"http://127.0.0.1:{port}/v1#m"], ["internlm_toolchain_mcq"], show=False)
    with pytest.raises(CampError, match="limit"):
        _stage.evaluate(["tiny"], ["internlm_toolchain_mcq"], limit=0, show=False)


# =========================================================================== the CLI (table / JSON printing)


def _fake_result(tmp_path):
    import pandas as pd

    table = pd.DataFrame([{"model": "tiny", "dataset": "quiz", "metric": "accuracy", "score": 40.0},
                          {"model": "tiny-ft", "dataset": "quiz", "metric": "accuracy", "score": 60.0},
                          {"model": "tiny-ft", "dataset": "sc", "metric": "contains", "score": float("nan")}])
    return _result.EvalResult(table=table, run_dir=tmp_path, config_path=tmp_path / "config.py", summary_csv=None,
                         predictions={}, models=["tiny", "tiny-ft"], datasets=["quiz", "sc"])


def test_cli_prints_the_table_or_json(tmp_path, monkeypatch, capsys):
    from camp.cli import build_parser

    seen = {}

    def fake(models, datasets, **kw):
        seen.update(models=models, datasets=datasets, **kw)
        return _fake_result(tmp_path)

    monkeypatch.setattr(_stage, "evaluate", fake)
    args = build_parser().parse_args(["eval", "tiny", "/m/ft", "-d", "internlm_toolchain_mcq", "-d", "x.jsonl",
                                      "--limit", "3", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scores"][1] == {"model": "tiny-ft", "dataset": "quiz", "metric": "accuracy", "score": 60.0}
    assert out["scores"][2]["score"] is None  # NaN is not JSON
    assert seen["models"] == ["tiny", "/m/ft"] and seen["datasets"] == ["internlm_toolchain_mcq", "x.jsonl"]
    assert seen["limit"] == 3
    args = build_parser().parse_args(["eval", "tiny", "-d", "internlm_toolchain_mcq"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert re.search(r"quiz\s+accuracy\s+40\.0\s+60\.0", text) and "run folder:" in text


def test_result_table_chart_and_html(tmp_path):
    r = _fake_result(tmp_path)
    assert r.score("tiny-ft", "quiz") == 60.0
    with pytest.raises(CampError, match="no score for model 'nobody'"):
        r.score("nobody", "quiz")
    assert list(r.scores().columns) == ["tiny", "tiny-ft"]
    fig = r.plot()
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 2 and sorted(b.get_height() for b in bars) == [40.0, 60.0]
    html = r._repr_html_()
    assert "<table" in html and "data:image/png;base64," in html


# =========================================================================== real OpenCompass runs (CPU, tiny)


def finetune_tiny(dest: Path, name: str, author: str) -> Path:
    """A "fine-tuned" tiny model in seconds: full-parameter training of a copy of tiny on camp.data's
    self-cognition set (plain torch on camp.tiny.forward) until every answer token is the greedy choice.
    Only the weights are rewritten, so the folder stays readable by transformers 4.x (OpenCompass's env)."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    from camp import data
    from camp.models import tiny

    src = tiny.ensure()
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    (dest / tiny.MARKER).unlink()
    cfg = json.loads((dest / "config.json").read_text())
    tok = Tokenizer.from_file(str(dest / "tokenizer.json"))
    torch.manual_seed(0)
    w = {k: v.clone().requires_grad_(True) for k, v in load_file(str(dest / "model.safetensors")).items()}
    seqs = [tiny.encode_dialogue(tok, r["messages"]) for r in data.self_cognition(name, author, lang="both")]
    length = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), length), cfg["pad_token_id"])
    trained = torch.zeros((len(seqs), length), dtype=torch.bool)
    for j, (i, m) in enumerate(seqs):
        ids[j, : len(i)] = torch.tensor(i)
        trained[j, : len(m)] = torch.tensor(m)
    where = trained[:, 1:].reshape(-1).nonzero().squeeze(1)
    targets = ids[:, 1:].reshape(-1)[where]
    opt = torch.optim.AdamW(list(w.values()), lr=3e-3, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(400):
            logits = tiny.forward(w, cfg, ids[:, :-1]).reshape(-1, cfg["hidden_size"])[where] @ w["lm_head.weight"].T
            with torch.no_grad():
                right = logits.gather(1, targets[:, None]).squeeze(1)
                other = logits.scatter(1, targets[:, None], float("-inf")).max(1).values
                if float((right - other).min()) > 1.0:
                    break
            loss = F.cross_entropy(logits, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            raise AssertionError("the test fine-tune did not converge")
    finally:
        torch.set_num_threads(threads)
    save_file({k: v.detach().contiguous() for k, v in w.items()}, str(dest / "model.safetensors"),
              metadata={"format": "pt"})
    return dest


@pytest.fixture(scope="module")
def served_tiny():
    """`transformers serve` (core env) on the tiny model at 127.0.0.1: an OpenAI-compatible endpoint on CPU."""
    import camp.models.tiny

    folder = str(camp.tiny.ensure())
    port = free_port()
    exe = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen([str(exe), "serve", folder, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=subprocess_env(OMP_NUM_THREADS="1"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.time() + 90
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("transformers serve did not come up") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1#{folder}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def custom_qa(tmp_path_factory):
    # the tiny model's pre-trained identity answers (camp.tiny) contain these words
    return write(tmp_path_factory.mktemp("sets") / "who_qa.jsonl", [
        {"question": "你是谁？", "answer": ["书生", "tiny"]},
        {"question": "Who are you?", "answer": "InternLM tiny"},
    ])


@pytest.fixture(scope="module")
def run(tmp_path_factory, served_tiny, custom_qa):
    """ONE OpenCompass run for most checks (its import alone is ~14 s): base tiny, a fine-tuned tiny and the
    endpoint × the two course sets and a custom file."""
    tool_env_python("opencompass")
    ft = finetune_tiny(tmp_path_factory.mktemp("models") / "tiny-sc", NAME, AUTHOR)
    return _stage.evaluate(["tiny", ft, served_tiny], ["self_cognition_check", "internlm_toolchain_mcq", custom_qa],
                       assistant_name=NAME, show=False, run_dir=tmp_path_factory.mktemp("eval-run"))


@pytest.mark.integration
def test_two_local_models_get_a_numeric_score_on_a_course_set(run):
    t = run.table
    assert run.models == ["tiny", "tiny-sc", "endpoint:tiny"]
    mcq = t[t.dataset == "internlm_toolchain_mcq"]
    assert set(mcq.model) == {"tiny", "tiny-sc", "endpoint:tiny"} and set(mcq.metric) == {"accuracy"}
    assert mcq.score.between(0, 100).all()  # numbers, no NaN
    assert list(run.scores().columns) == run.models
    answers = run.answers("tiny-sc", "internlm_toolchain_mcq")
    assert len(answers) == 36 and "XTuner" in answers[0]["prompt"]


@pytest.mark.integration
def test_fine_tuned_model_beats_the_base_on_self_cognition(run):
    base = run.score("tiny", "self_cognition_check", "contains")
    tuned = run.score("tiny-sc", "self_cognition_check", "contains")
    assert base == 0.0  # the base tiny model calls itself 书生·浦语 tiny
    assert tuned >= 70.0 and tuned > base
    said = {a["prompt"].strip(): a["prediction"] for a in run.answers("tiny-sc", "self_cognition_check")}
    assert NAME in said["你是谁？"]


@pytest.mark.integration
def test_custom_jsonl_by_path_is_scored_by_contains(run, custom_qa):
    assert run.score("tiny", "who_qa", "contains") == 100.0
    gold = [a["gold"] for a in run.answers("tiny", "who_qa")]
    assert gold == [["书生", "tiny"], ["InternLM tiny"]]


@pytest.mark.integration
def test_endpoint_model_is_evaluated_like_the_local_one(run):
    # the same tiny model behind transformers serve: same identity answers, so the same scores on these sets
    assert run.score("endpoint:tiny", "who_qa") == run.score("tiny", "who_qa") == 100.0
    assert run.score("endpoint:tiny", "self_cognition_check") == 0.0
    cfg = run.config_path.read_text(encoding="utf-8")
    assert "type=OpenAISDK" in cfg and "tokenizer_path=" in cfg and "num_gpus=0" in cfg


@pytest.mark.integration
def test_run_folder_holds_config_predictions_and_summary(run):
    assert run.config_path.parent == run.run_dir and run.summary_csv.is_file()
    assert (run.run_dir / "log.txt").is_file() and (run.run_dir / "camp_scoring.py").is_file()
    for model in run.models:
        for ds in ("self_cognition_check", "internlm_toolchain_mcq", "who_qa"):
            assert run.predictions[model][ds].is_file()
    data = json.loads(run.to_json())
    assert {(r["model"], r["dataset"]) for r in data["scores"]} >= {("tiny-sc", "who_qa")}
    assert data["settings"]["num_gpus"] == 0 and data["settings"]["debug"] is True


@pytest.mark.integration
def test_a_model_that_fails_inference_is_a_clear_failure(tmp_path, custom_qa):
    import camp.models.tiny

    tool_env_python("opencompass")
    broken = tmp_path / "broken"
    shutil.copytree(camp.tiny.ensure(), broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["hidden_size"] = 96  # weights no longer fit: loading fails inside OpenCompass
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(_stage.EvalError) as exc:
        _stage.evaluate([str(broken)], [custom_qa], show=False, run_dir=tmp_path / "run")
    msg = str(exc.value)
    assert "broken on who_qa: no predictions (inference failed)" in msg
    assert "size mismatch" in msg and "log:" in msg


@pytest.mark.integration
def test_camp_eval_command_prints_json(tmp_path, custom_qa):
    tool_env_python("opencompass")
    out = subprocess.run([sys.executable, "-m", "camp", "eval", "tiny", "-d", str(custom_qa), "--json",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True,
                         env=subprocess_env(), cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["scores"] == [{"model": "tiny", "dataset": "who_qa", "metric": "contains", "score": 100.0}]
    assert (tmp_path / "run" / "config.py").is_file()
