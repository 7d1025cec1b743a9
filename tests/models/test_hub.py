"""The catalogue and `camp download`: cache and shared-folder hits, completion marker, offline errors. No network."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import camp.models.hub as _hub
import camp.models.internlm2
import camp.models.listing as _listing
import camp.models.registry as _registry
from camp.runtime.errors import CampError
from tests.conftest import ROOT, subprocess_env

REQUIRED = ["tiny", "internlm2-chat-1_8b", "internlm2_5-1_8b-chat", "internlm2_5-7b-chat", "internlm2_5-20b-chat",
            "internlm-xcomposer2", "internvl2-2b"]
VISION = "internvl2-2b"  # returned as downloaded: no InternLM2 normalisation in the way
VISION_ID = "OpenGVLab/InternVL2-2B"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No shared folder, an empty cache, and hubs pointed at a closed local port."""
    monkeypatch.setenv("CAMP_SHARED_MODELS", str(tmp_path / "share"))
    monkeypatch.setenv("CAMP_MODELS", str(tmp_path / "models"))
    port = closed_port()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://127.0.0.1:{port}")
    for var in ("HF_ENDPOINT", "CAMP_HF_ENDPOINT", "MODELSCOPE_DOMAIN", "CAMP_PROFILE", "CAMP_FAKE_GPUS",
                "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def no_network(monkeypatch):
    """Any hub call fails the test."""

    def boom(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(_hub, "_ms_snapshot_download", boom)
    monkeypatch.setattr(_hub, "_hf_snapshot_download", boom)
    monkeypatch.setattr(_hub, "probe_many", boom)


def hub_reachable(monkeypatch):
    monkeypatch.setattr(_hub, "probe_many", lambda urls, timeout=1.5: {k: (True, "reachable") for k in urls})


def checkpoint(folder: Path, shards: int = 2, arch: str = "InternVLChatModel") -> Path:
    """A small but well-formed sharded checkpoint folder (what a hub snapshot looks like)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "x"}))
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"layer{i}": n for i, n in enumerate(names)}}))
    for n in names:
        (folder / n).write_bytes(b"\0" * 64)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def ms_snapshot(cache: Path, model_id: str = VISION_ID, rev: str = "master") -> Path:
    owner, name = model_id.split("/")
    return cache / "models" / f"{owner}--{name}" / "snapshots" / rev


def fake_modelscope(monkeypatch, calls: list, *, shards_written: int | None = None, fail: bool = False):
    """A stand-in for ModelScope's snapshot_download writing into its real cache layout."""

    def fake(model_id, *, revision, cache_dir, **kw):
        calls.append((model_id, revision, cache_dir))
        folder = ms_snapshot(Path(cache_dir), model_id, revision)
        checkpoint(folder)
        if shards_written is not None:  # lose the later shards
            for f in sorted(folder.glob("model-*.safetensors"))[shards_written:]:
                f.unlink()
        if fail:
            raise ConnectionError("Connection reset by peer\n(details)")
        return str(folder)

    monkeypatch.setattr(_hub, "_ms_snapshot_download", fake)


# ---------------------------------------------------------------- catalogue
def test_catalogue_has_the_course_models():
    names = {m.name for m in _listing.catalogue()}
    for required in REQUIRED:
        assert _listing.get(required).name in names


def test_catalogue_fields_are_sane():
    for m in _listing.catalogue():
        assert m.title and m.chat_template == "internlm2" and m.modality in ("text", "vision")
        assert m.arch in ("internlm2", "internlm-xcomposer2", "internvl2", "llama", "llava")
        assert m.params > 0
        mem = m.memory_gb
        assert set(mem) == {"chat", "lora", "qlora"}
        assert 0 < mem["chat"] <= mem["lora"]
        assert mem["qlora"] is None or mem["qlora"] < mem["lora"]
        if m.name in ("tiny", "tiny-vl"):  # built locally
            assert m.ids == [] and m.arch == {"tiny": "llama", "tiny-vl": "llava"}[m.name] and not m.remote_code
            continue
        assert m.modelscope.count("/") == 1 and m.hf.count("/") == 1 and m.revision
        assert m.remote_code and m.dtype == "bfloat16"
        assert all(u.startswith("https://") for u in m.source) and m.source
    assert _listing.get("internlm2-chat-1_8b").revision == "v1.1.0"
    # a bigger model needs more memory
    chat = [_listing.get(n).memory_gb["chat"] for n in ("internlm2_5-1_8b-chat", "internlm2_5-7b-chat",
                                                        "internlm2_5-20b-chat")]
    assert chat == sorted(chat) and len(set(chat)) == 3
    # XTuner's own InternLM2-Chat-7B QLoRA log at 2048 tokens peaks at 13969 MiB: a 24 GB GPU, not 8 GB
    assert 8 < _listing.get("internlm2_5-7b-chat").memory_gb["qlora"] <= 24
    assert _listing.get("internlm2_5-1_8b-chat").memory_gb["qlora"] <= 8  # the camp ran it on a 10 % A100 slice


@pytest.mark.parametrize("query", ["internlm2_5-7b-chat", "INTERNLM2_5-7B-CHAT", "Shanghai_AI_Laboratory/internlm2_5-7b-chat",
                                   "internlm/internlm2_5-7b-chat", " internlm2_5-7b-chat "])
def test_get_by_name_or_id(query):
    assert _listing.get(query).name == "internlm2_5-7b-chat"


def test_get_vision_models_by_id_and_alias():
    assert _listing.get("OpenGVLab/InternVL2-2B").name == "internvl2-2b"
    assert _listing.get("InternVL2-2B").name == "internvl2-2b"
    assert _listing.get("internlm-xcomposer2").modality == "vision"


def test_get_unknown_suggests_close_names():
    with pytest.raises(CampError) as e:
        _listing.get("internlm2.5-7b-chat")
    msg = str(e.value)
    assert "did you mean internlm2_5-7b-chat" in msg and "camp models" in msg
    with pytest.raises(CampError, match="internvl2-2b"):
        _listing.get("internvl-2b")


# ---------------------------------------------------------------- download: local hits
def test_complete_download_writes_marker_then_cache_hit_is_offline(isolated, monkeypatch):
    cache = isolated / "cache"
    calls: list = []
    hub_reachable(monkeypatch)
    fake_modelscope(monkeypatch, calls)
    path = _hub.download(VISION, cache_dir=cache, progress=False)
    assert path == ms_snapshot(cache)
    assert calls == [(VISION_ID, "master", str(cache))]
    marker = json.loads((path / _hub.MARKER).read_text())
    assert marker["model"] == VISION_ID and marker["revision"] == "master" and marker["source"] == "modelscope"
    assert marker["files"]["model-00002-of-00002.safetensors"] == 64 and "config.json" in marker["files"]

    no_network(monkeypatch)  # second time: from the cache, no hub call, no probe
    assert _hub.download(VISION, cache_dir=cache) == path
    assert _hub.download(VISION_ID.upper(), cache_dir=cache) == path


def test_default_cache_is_models_dir(isolated, monkeypatch):
    calls: list = []
    hub_reachable(monkeypatch)
    fake_modelscope(monkeypatch, calls)
    path = _hub.download(VISION, progress=False)
    assert path == ms_snapshot(isolated / "models")


@pytest.mark.parametrize("layout", ["snapshots", "legacy", "plain"])
def test_cache_hit_in_modelscope_layouts(isolated, monkeypatch, layout):
    cache = isolated / "cache"
    folder = {"snapshots": ms_snapshot(cache), "legacy": cache / "models" / "OpenGVLab" / "InternVL2-2B",
              "plain": cache / "OpenGVLab" / "InternVL2-2B"}[layout]
    checkpoint(folder)
    _hub.write_marker(folder, VISION_ID, "master", "modelscope")
    no_network(monkeypatch)
    assert _hub.download(VISION, cache_dir=cache) == folder


def test_folder_without_marker_is_not_a_hit(isolated):
    cache = isolated / "cache"
    checkpoint(ms_snapshot(cache))  # all files there, but nobody saw the download finish
    with pytest.raises(CampError, match="not in .*cache"):
        _hub.download(VISION, cache_dir=cache)  # falls through to the (closed) hub


def test_marker_of_other_revision_or_lost_file_is_not_a_hit(isolated, monkeypatch):
    cache = isolated / "cache"
    folder = checkpoint(cache / "OpenGVLab" / "InternVL2-2B")
    _hub.write_marker(folder, VISION_ID, "v1.0", "modelscope")
    assert _hub.find_local(_listing.get(VISION), cache_dir=cache) is None
    _hub.write_marker(folder, VISION_ID, "master", "modelscope")
    assert _hub.find_local(_listing.get(VISION), cache_dir=cache) == (folder, "cache")
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert _hub.find_local(_listing.get(VISION), cache_dir=cache) is None


def test_shared_folder_is_used_in_place(isolated, monkeypatch):
    shared = checkpoint(isolated / "share" / "OpenGVLab" / "InternVL2-2B")
    no_network(monkeypatch)
    assert _hub.download(VISION) == shared
    assert not (isolated / "models").exists()  # nothing copied


def test_shared_folder_by_bare_name_and_internlm2_is_normalised(isolated, monkeypatch):
    shared = checkpoint(isolated / "share" / "internlm2_5-7b-chat", arch="InternLM2ForCausalLM")
    seen = []

    def fake_normalize(src, dst=None, *, force=False):
        seen.append(Path(src))
        return isolated / "models" / "internlm2_5-7b-chat-llama"

    monkeypatch.setattr(camp.models.internlm2, "normalize", fake_normalize)
    no_network(monkeypatch)
    assert _hub.download("internlm2_5-7b-chat") == isolated / "models" / "internlm2_5-7b-chat-llama"
    assert seen == [shared]


def test_incomplete_shared_folder_is_skipped(isolated):
    checkpoint(isolated / "share" / "OpenGVLab" / "InternVL2-2B")
    (isolated / "share" / "OpenGVLab" / "InternVL2-2B" / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(CampError, match="no model hub is reachable"):
        _hub.download(VISION)


def test_tiny_is_built_locally(isolated, monkeypatch):
    built = isolated / "tiny-model"
    monkeypatch.setattr("camp.models.tiny.ensure", lambda force=False: built)
    no_network(monkeypatch)
    assert _hub.download("tiny") == built


# ---------------------------------------------------------------- download: failures
def test_interrupted_download_leaves_no_marker(isolated, monkeypatch):
    cache = isolated / "cache"
    hub_reachable(monkeypatch)
    fake_modelscope(monkeypatch, [], shards_written=1, fail=True)
    with pytest.raises(CampError) as e:
        _hub.download(VISION, cache_dir=cache, progress=False)
    msg = str(e.value)
    assert "Connection reset by peer" in msg and "again" in msg and "\n" not in msg
    assert not list(cache.rglob(_hub.MARKER))
    # and the leftovers are not taken for a model next time
    monkeypatch.setattr(_hub, "probe_many", lambda urls, timeout=1.5: {k: (False, "offline") for k in urls})
    with pytest.raises(CampError, match="no model hub is reachable"):
        _hub.download(VISION, cache_dir=cache)


def test_hub_returning_a_partial_snapshot_is_not_marked(isolated, monkeypatch):
    cache = isolated / "cache"
    hub_reachable(monkeypatch)
    fake_modelscope(monkeypatch, [], shards_written=1)  # "succeeds" but shard 2 never arrived
    with pytest.raises(CampError, match="incomplete: weight shard model-00002-of-00002.safetensors"):
        _hub.download(VISION, cache_dir=cache, progress=False)
    assert not list(cache.rglob(_hub.MARKER))


def test_offline_error_comes_from_the_probe_and_says_what_to_do(isolated, monkeypatch):
    # real probe against a closed port (MODELSCOPE_ENDPOINT from the fixture); ModelScope's own client
    # retries for 8-22 s before giving up, so offline it must never be called
    def hub_client_called(*a, **kw):
        raise AssertionError("the hub client was called although the probe found no hub")

    monkeypatch.setattr(_hub, "_ms_snapshot_download", hub_client_called)
    monkeypatch.setattr(_hub, "_hf_snapshot_download", hub_client_called)
    with pytest.raises(CampError) as e:
        _hub.download("internlm2_5-7b-chat", cache_dir=isolated / "cache")
    msg = str(e.value)
    for needle in ("internlm2_5-7b-chat", "Shanghai_AI_Laboratory/internlm2_5-7b-chat", str(isolated / "cache"),
                   "no model hub is reachable", "127.0.0.1", "CAMP_SHARED_MODELS", "`tiny`", "HF_ENDPOINT"):
        assert needle in msg


def test_hf_fallback_when_modelscope_fails(isolated, monkeypatch):
    cache = isolated / "cache"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    hub_reachable(monkeypatch)
    fake_modelscope(monkeypatch, [], fail=True)
    calls = []

    def fake_hf(repo_id, *, revision, cache_dir, endpoint, **kw):
        calls.append((repo_id, revision, endpoint))
        return str(checkpoint(Path(cache_dir) / "models--OpenGVLab--InternVL2-2B" / "snapshots" / "abc123"))

    monkeypatch.setattr(_hub, "_hf_snapshot_download", fake_hf)
    path = _hub.download(VISION, cache_dir=cache, progress=False)
    assert calls == [(VISION_ID, "main", "https://hf-mirror.example")]
    assert json.loads((path / _hub.MARKER).read_text())["source"] == "hf"
    no_network(monkeypatch)
    assert _hub.download(VISION, cache_dir=cache) == path  # the HF layout is a cache hit too


def test_hf_endpoint_unreachable_is_named(isolated, monkeypatch):
    monkeypatch.setenv("CAMP_HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(CampError) as e:
        _hub.download(VISION, cache_dir=isolated / "cache")
    assert str(e.value).count("127.0.0.1:") >= 2  # both hubs and why


@pytest.mark.integration  # runs the real tool (pip / ModelScope / LMDeploy's launcher / git): seconds
def test_real_modelscope_client_against_closed_port(isolated):
    """Past the probe, ModelScope's own client fails: still one clean line, no marker, no traceback."""
    cache = isolated / "cache"
    code = (
        "import sys; from camp import cli; from camp.models import hub as _hub\n"
        "_hub.probe_many = lambda urls, timeout=1.5: {k: (True, 'forced') for k in urls}\n"
        f"sys.exit(cli.main(['download', 'internvl2-2b', '--cache-dir', {str(cache)!r}]))\n"
    )
    env = subprocess_env(MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS="1", MODELSCOPE_CACHE=str(isolated / "mscache"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("camp: downloading internvl2-2b (OpenGVLab/InternVL2-2B@master) from ModelScope failed")
    assert not list(cache.rglob(_hub.MARKER))


# ---------------------------------------------------------------- resolve
def test_resolve_auto_follows_the_profile(isolated, monkeypatch):
    built = isolated / "tiny-model"
    monkeypatch.setattr("camp.models.tiny.ensure", lambda force=False: built)
    monkeypatch.setenv("CAMP_FAKE_GPUS", "none")
    assert _hub.resolve("auto") == built
    assert _hub.resolve(None) == built
    monkeypatch.setenv("CAMP_FAKE_GPUS", "80")
    shared = checkpoint(isolated / "share" / "Shanghai_AI_Laboratory" / "internlm2_5-7b-chat",
                        arch="InternLM2ForCausalLM")
    monkeypatch.setattr(camp.models.internlm2, "normalize", lambda src, dst=None, force=False: Path(str(src) + "-llama"))
    assert _hub.resolve("auto") == Path(str(shared) + "-llama")
    assert _hub.resolve("auto", profile="cpu-tiny") == built


def test_resolve_local_folders(isolated, monkeypatch):
    plain = checkpoint(isolated / "my-llama", arch="LlamaForCausalLM")
    no_network(monkeypatch)
    assert _hub.resolve(str(plain)) == plain
    assert _hub.resolve(plain) == plain
    ilm = checkpoint(isolated / "my-internlm2", arch="InternLM2ForCausalLM")
    monkeypatch.setattr(camp.models.internlm2, "normalize", lambda src, dst=None, force=False: Path(str(src) + "-llama"))
    assert _hub.resolve(ilm) == Path(str(ilm) + "-llama")
    with pytest.raises(CampError, match="no model folder at"):
        _hub.resolve(str(isolated / "nope"))


# ---------------------------------------------------------------- CLI
def run_camp(*args, **env):
    return subprocess.run([sys.executable, "-m", "camp", *args], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(**env), timeout=60)


def test_cli_download_unknown_name(isolated):
    r = run_camp("download", "no-such-model")
    assert r.returncode != 0 and r.stdout == ""
    assert "Traceback" not in r.stderr
    assert "unknown model 'no-such-model'" in r.stderr and "internlm2_5-7b-chat" in r.stderr
    r = run_camp("download", "internlm2.5-7b-chat")
    assert r.returncode != 0 and "did you mean internlm2_5-7b-chat" in r.stderr


def test_cli_download_offline(isolated):
    r = run_camp("download", "internlm2_5-1_8b-chat", "--cache-dir", str(isolated / "cache"))
    assert r.returncode == 1 and r.stdout == ""
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "no model hub is reachable" in r.stderr


def test_cli_download_prints_only_the_path(isolated):
    cache = isolated / "cache"
    folder = checkpoint(ms_snapshot(cache))
    _hub.write_marker(folder, VISION_ID, "master", "modelscope")
    r = run_camp("download", VISION, "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{folder}\n"


def test_cli_models_lists_the_catalogue(isolated):
    r = run_camp("models")
    assert r.returncode == 0, r.stderr
    for m in _listing.catalogue():
        assert m.name in r.stdout
        if m.modelscope:
            assert m.modelscope in r.stdout
    r = run_camp("models", "--json")
    data = json.loads(r.stdout)
    assert [d["name"] for d in data if not d.get("registered")] == [m.name for m in _listing.catalogue()]
    assert {d["name"] for d in data if d.get("registered")} == set(_registry.registered())
    assert all("memory_gb" in d and "state" in d for d in data if not d.get("registered"))


def test_cli_models_shows_what_is_here(isolated):
    checkpoint(isolated / "share" / "OpenGVLab" / "InternVL2-2B")
    r = run_camp("models", "--json")
    row = {d["name"]: d for d in json.loads(r.stdout)}["internvl2-2b"]
    assert row["state"] == "shared" and row["local"] == str(isolated / "share" / "OpenGVLab" / "InternVL2-2B")


def test_download_progress_is_one_bar_on_stderr(isolated, monkeypatch, capsys):
    hub_reachable(monkeypatch)

    def fake(model_id, *, revision, cache_dir, progress_callbacks, **kw):
        folder = checkpoint(ms_snapshot(Path(cache_dir)))
        for f in sorted(folder.iterdir()):  # what ModelScope does per file
            cb = progress_callbacks[0](f.name, f.stat().st_size)
            cb.update(f.stat().st_size)
            cb.end()
        return str(folder)

    monkeypatch.setattr(_hub, "_ms_snapshot_download", fake)
    _hub.download(VISION, cache_dir=isolated / "cache", progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    total = sum(f.stat().st_size for f in ms_snapshot(isolated / "cache").iterdir() if f.name != _hub.MARKER)
    assert "internvl2-2b" in out.err and f"{total}/{total}" in out.err.replace("B", "").replace(" ", "")
