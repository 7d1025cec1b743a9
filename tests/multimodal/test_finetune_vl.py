"""The vision-language fine-tune: camp.finetune hands a LLaVA dataset to XTuner's LLaVA pipeline (xtuner env),
and tiny-vl learns a question it could not answer, on pictures it never saw."""

from __future__ import annotations

import json

import pytest

import camp
from camp.data.records import DataError
from camp.multimodal import scenes, score
from camp.runtime.errors import CampError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LESSON_IMAGES = 800  # notebooks/07_multimodal.ipynb: train_images


def test_fine_tune_teaches_a_new_question(tmp_path):
    # The lesson's data and settings (07_multimodal): the run folder is keyed by base, data and settings, so
    # whichever of the lesson and this test runs first trains and the other reuses the finished run.
    data = scenes.write_llava(tmp_path / "data", LESSON_IMAGES, seed=11, task="side")
    held = score.held_out(60, seed=31337, task="side")
    before = score.score("tiny-vl", held)
    assert before.accuracy <= 0.2, before
    name = f"tiny-vl-side-test-{tmp_path.name[-6:]}"
    try:
        r = camp.finetune("tiny-vl", data, name=name, show=False)
        assert (r.run_dir / "config.py").read_text().count("LLaVAModel") >= 1
        assert (r.run_dir / "data_tokenized" / "dataset_info.json").is_file()
        assert r.losses and r.losses[-1][1] < r.losses[0][1] / 10
        after = score.score(name, held)
        assert after.accuracy >= 0.9, after.wrong[:5]
        print(f"held-out side questions: before {before.accuracy:.0%}, after {after.accuracy:.0%}; seconds {r.seconds}")
        # the same fine-tune again: the finished run is returned, nothing retrained
        again = camp.finetune("tiny-vl", data, name=name, show=False)
        assert again.reused and again.merged_dir == r.merged_dir and again.run_dir == r.run_dir
        # served like any registered model
        from tests.multimodal.test_serve_vl import _port

        ep = camp.serve(name, port=_port())
        try:
            assert score.score(ep.model, held[:5], base_url=ep.base_url).accuracy == score.score(name, held[:5]).accuracy
        finally:
            ep.stop()
    finally:
        camp.models.unregister(name)


def test_bad_datasets_are_refused_before_anything_starts(tmp_path):
    data = scenes.write_llava(tmp_path, 3, seed=2, task="side")
    rows = json.loads(data.read_text())
    rows[1]["image"] = "images/gone.png"
    data.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    run = tmp_path / "run"
    with pytest.raises(DataError, match=rf"{data}:\d+: image 'images/gone.png' not found"):
        camp.finetune("tiny-vl", data, run_dir=run, show=False)
    assert not run.exists()
    good = scenes.write_llava(tmp_path / "ok", 3, seed=2, task="side")
    with pytest.raises(CampError, match="text-only model"):
        camp.finetune("tiny", good, run_dir=run, show=False)
    assert not run.exists()
