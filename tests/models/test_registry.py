"""Registered models: a fine-tuned folder gets a name that get/resolve/download (and so camp.chat) accept."""

from __future__ import annotations

import json

import pytest

from camp import models
from camp.runtime.errors import CampError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAMP_SHARED_MODELS", "")
    return tmp_path / "home"


def model_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"x" * 16)
    return path


def test_a_registered_name_resolves_to_its_folder(home, tmp_path):
    folder = model_folder(tmp_path / "merged")
    assert models.register("tiny-ft-小助手", folder, base="tiny", meta={"run_dir": "r"}) == folder.resolve()
    entry = models.registered()["tiny-ft-小助手"]
    assert entry["path"] == str(folder.resolve()) and entry["base"] == "tiny" and entry["meta"] == {"run_dir": "r"}
    assert (home / "registry.json").is_file()
    assert models.resolve("tiny-ft-小助手") == folder.resolve()
    assert models.download("tiny-ft-小助手") == folder.resolve()
    assert models.resolve("TINY-FT-小助手") == folder.resolve()  # names are case-insensitive, like the catalogue
    m = models.get("tiny-ft-小助手")
    assert m.name == "tiny-ft-小助手" and not m.in_catalogue and "tiny" in m.title
    assert m.params == models.get("tiny").params  # sizes come from the base model


def test_re_registering_moves_the_name_only_when_asked_and_unregister_forgets_it(home, tmp_path):
    a, b = model_folder(tmp_path / "a"), model_folder(tmp_path / "b")
    models.register("mine", a)
    models.register("mine", a)  # the same folder again: nothing to replace
    with pytest.raises(CampError, match="already registered.*replace=True"):
        models.register("MINE", b)
    assert models.resolve("mine") == a.resolve()  # the earlier model keeps its name
    models.register("mine", b, replace=True)
    assert models.resolve("mine") == b.resolve() and len(models.registered()) == 1
    assert models.unregister("mine") is True and models.unregister("mine") is False
    with pytest.raises(CampError, match="unknown model 'mine'"):
        models.resolve("mine")
    assert b.is_dir()  # the folder stays


def test_bad_names_and_folders_are_refused(home, tmp_path):
    folder = model_folder(tmp_path / "m")
    for bad in ("tiny", "internlm2_5-7b-chat", "Shanghai_AI_Laboratory/internlm2_5-7b-chat", "auto", "a b", ""):
        with pytest.raises(CampError):
            models.register(bad, folder)
    with pytest.raises(CampError, match="no such folder"):
        models.register("ghost", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CampError, match="config.json"):
        models.register("empty", tmp_path / "empty")
    assert models.registered() == {}


def test_a_registered_folder_that_disappeared_says_what_to_do(home, tmp_path):
    import shutil

    folder = model_folder(tmp_path / "gone")
    models.register("gone-model", folder)
    shutil.rmtree(folder)
    with pytest.raises(CampError, match=r"unregister\('gone-model'\)"):
        models.resolve("gone-model")


def test_a_typo_suggests_the_registered_name(home, tmp_path):
    models.register("my-assistant", model_folder(tmp_path / "m"))
    with pytest.raises(CampError, match="did you mean my-assistant"):
        models.get("my-asistant")


def test_a_taken_name_gets_a_version_and_the_earlier_model_keeps_it(home, tmp_path):
    a, b, c = (model_folder(tmp_path / x) for x in "abc")
    assert models.register_new("my-assistant", a) == "my-assistant"
    assert models.register_new("my-assistant", a) == "my-assistant"  # the same folder: same name, no new version
    assert models.register_new("my-assistant", b) == "my-assistant-2"
    assert models.register_new("my-assistant", c) == "my-assistant-3"
    assert [models.resolve(n) for n in ("my-assistant", "my-assistant-2", "my-assistant-3")] == [
        a.resolve(), b.resolve(), c.resolve()]
    assert models.register_new("my-assistant", c, replace=True) == "my-assistant"
    assert models.resolve("my-assistant") == c.resolve()
