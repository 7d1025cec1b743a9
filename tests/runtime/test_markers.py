"""camp.runtime.markers: folders camp writes are complete or absent, and a complete one is never overwritten."""

from __future__ import annotations

import json

import pytest

from camp.runtime import markers
from camp.runtime.errors import CampError


def _folder(path, payload=b"123"):
    path.mkdir()
    (path / "model.safetensors").write_bytes(payload)
    (path / "sub").mkdir()
    (path / "sub" / "a.json").write_text("{}")
    return path


def test_a_marked_folder_is_complete_until_a_file_changes(tmp_path):
    folder = _folder(tmp_path / "merged")
    assert not markers.is_complete(folder)
    data = markers.mark(folder, "merged", base="tiny")
    assert data["files"] == {"model.safetensors": 3, "sub/a.json": 2} and data["kind"] == "merged"
    assert markers.is_complete(folder) and markers.is_complete(folder, "merged", base="tiny")
    assert not markers.is_complete(folder, "adapter") and not markers.is_complete(folder, "merged", base="other")
    (folder / "model.safetensors").write_bytes(b"12")
    assert not markers.is_complete(folder)


def test_a_marker_written_before_kinds_existed_still_counts(tmp_path):
    folder = _folder(tmp_path / "snapshot")
    (folder / markers.MARKER).write_text(json.dumps({"model": "x/y", "files": {"model.safetensors": 3,
                                                                               "sub/a.json": 2}}))
    assert markers.is_complete(folder, "download")


def test_install_never_overwrites_a_complete_folder_unless_asked(tmp_path):
    folder = _folder(tmp_path / "merged")
    markers.mark(folder, "merged")
    tmp = _folder(tmp_path / ".merged.tmp-1", b"4567")
    markers.mark(tmp, "merged")
    with pytest.raises(CampError, match="already complete"):
        markers.install(tmp, folder)
    assert (folder / "model.safetensors").read_bytes() == b"123"
    markers.install(tmp, folder, replace=True)
    assert (folder / "model.safetensors").read_bytes() == b"4567" and not tmp.exists()
    assert not list(tmp_path.glob(".merged.old-*"))


def test_an_incomplete_folder_is_replaced_and_an_unmarked_tmp_refused(tmp_path):
    folder = _folder(tmp_path / "adapter")  # a crash left it without a marker
    tmp = _folder(tmp_path / ".adapter.tmp-2", b"89")
    with pytest.raises(CampError, match="not marked complete"):
        markers.install(tmp, folder)
    markers.mark(tmp, "adapter")
    markers.install(tmp, folder)
    assert (folder / "model.safetensors").read_bytes() == b"89" and markers.is_complete(folder, "adapter")


def test_building_leaves_nothing_behind_on_failure_and_installs_on_success(tmp_path):
    out = tmp_path / "models" / "built"
    with pytest.raises(RuntimeError, match="boom"):
        with markers.building(out) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not out.exists() and not list(out.parent.glob(".built.*"))
    with markers.building(out) as tmp:
        (tmp / "model.safetensors").write_bytes(b"ok")
        markers.mark(tmp, "tiny", recipe=3)
    assert markers.is_complete(out, "tiny", recipe=3) and not list(out.parent.glob(".built.*"))
    with pytest.raises(CampError, match="not marked complete"):  # forgot to mark: not installed
        with markers.building(tmp_path / "other") as tmp:
            (tmp / "x").write_text("x")
    assert not (tmp_path / "other").exists()


def test_write_json_is_atomic_and_read_json_forgives(tmp_path):
    path = tmp_path / "state.json"
    assert markers.read_json(path) == {}
    markers.write_json(path, {"a": 1, "名": "值"})
    assert markers.read_json(path) == {"a": 1, "名": "值"} and not list(tmp_path.glob(".state.json.*"))
    path.write_text("{not json")
    assert markers.read_json(path) == {}
