"""Workspace folders and runs: layout, refusing to overwrite, finding runs, and `init`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbooth import api
from dbooth.workspace import folder as workspace
from dbooth.workspace.config import Manifest
from dbooth.util.errors import DboothError
from dbooth.workspace.folder import MANIFEST_NAME, create_workspace, find_run, list_runs, new_run, open_workspace


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


# --- create / open ---------------------------------------------------------------------------


def test_create_then_open_has_the_layout(tmp_path):
    ws = create_workspace(tmp_path / "corgi", Manifest(class_noun="dog"))
    assert ws.root == tmp_path / "corgi"
    assert sorted(p.name for p in ws.root.iterdir()) == sorted([MANIFEST_NAME, "class", "instance", "runs"])
    for sub in (ws.instance_dir, ws.class_dir, ws.runs_dir):
        assert sub.is_dir() and not any(sub.iterdir())
    opened = open_workspace(tmp_path / "corgi")
    assert opened.root == ws.root
    assert opened.manifest().class_noun == "dog"
    # no temporary folder is left next to it
    assert [p.name for p in tmp_path.iterdir()] == ["corgi"]


def test_create_refuses_an_existing_folder_and_leaves_it_alone(tmp_path):
    target = tmp_path / "corgi"
    (target / "instance").mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    (target / "instance" / "a.jpg").write_bytes(b"not really a jpeg")
    before = snapshot(target)
    with pytest.raises(DboothError, match="already exists"):
        create_workspace(target, Manifest(class_noun="dog"))
    with pytest.raises(DboothError, match="already exists"):
        api.init(target, "dog")
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corgi"]


def test_create_refuses_an_existing_file(tmp_path):
    (tmp_path / "corgi").write_text("a file")
    with pytest.raises(DboothError, match="already exists"):
        create_workspace(tmp_path / "corgi", Manifest(class_noun="dog"))
    assert (tmp_path / "corgi").read_text() == "a file"


def test_create_with_a_bad_photo_creates_nothing(tmp_path, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DboothError, match="broken.jpg"):
        create_workspace(tmp_path / "corgi", Manifest(class_noun="dog"), images=photos)
    assert not (tmp_path / "corgi").exists()
    assert not list(tmp_path.glob(".corgi*"))


def test_open_missing_folder(tmp_path):
    with pytest.raises(DboothError, match="does not exist"):
        open_workspace(tmp_path / "nope")


def test_open_folder_without_manifest(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DboothError, match=MANIFEST_NAME):
        open_workspace(tmp_path / "plain")


# --- runs ------------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path):
    return create_workspace(tmp_path / "ws", Manifest(class_noun="dog"))


def add_run(ws, created: float, status: str, method: str = "lora"):
    run = new_run(ws, method)
    run.write_info({"run_id": run.id, "created": created, "status": status, "method": method})
    return run


def test_new_run_names_are_unique_within_one_second(ws, monkeypatch):
    monkeypatch.setattr(workspace.time, "strftime", lambda fmt: "20240101-120000")
    runs = [new_run(ws, "lora") for _ in range(3)] + [new_run(ws, "full")]
    names = [r.id for r in runs]
    assert names == ["20240101-120000-lora", "20240101-120000-lora-2", "20240101-120000-lora-3", "20240101-120000-full"]
    assert all(r.dir.is_dir() and r.dir.parent == ws.runs_dir for r in runs)


def test_find_run_latest_complete(ws):
    older = add_run(ws, 100.0, "complete")
    newer = add_run(ws, 200.0, "complete")
    add_run(ws, 300.0, "running")  # newest, but unfinished
    assert find_run(ws).id == newer.id
    assert find_run(ws, complete=False).info()["created"] == 300.0
    assert find_run(ws, older.id).id == older.id  # by id
    assert find_run(ws, str(older.dir)).id == older.id  # by path
    assert [r.info()["created"] for r in list_runs(ws)] == [100.0, 200.0, 300.0]


def test_find_run_orders_by_created_not_by_name(ws, monkeypatch):
    monkeypatch.setattr(workspace.time, "strftime", lambda fmt: "20990101-000000")
    late_name = add_run(ws, 100.0, "complete")
    monkeypatch.setattr(workspace.time, "strftime", lambda fmt: "20000101-000000")
    early_name = add_run(ws, 200.0, "complete")
    assert find_run(ws).id == early_name.id != late_name.id


def test_find_run_unknown_id(ws):
    add_run(ws, 100.0, "complete")
    with pytest.raises(DboothError, match="run nope: not found"):
        find_run(ws, "nope")


def test_find_run_unfinished_by_id(ws):
    run = add_run(ws, 100.0, "running")
    with pytest.raises(DboothError, match="has not finished"):
        find_run(ws, run.id)
    assert find_run(ws, run.id, complete=False).id == run.id


def test_find_run_with_no_finished_runs(ws):
    with pytest.raises(DboothError, match="dbooth train"):
        find_run(ws)
    add_run(ws, 100.0, "running")
    with pytest.raises(DboothError, match="no finished training runs"):
        find_run(ws)


def test_damaged_run_info_is_a_dbooth_error(ws):
    run = add_run(ws, 100.0, "complete")
    run.info_path.write_text("{not json")
    with pytest.raises(DboothError, match="damaged"):
        find_run(ws)


# --- api.init --------------------------------------------------------------------------------


def test_init_stores_an_absolute_path_for_a_local_model(tmp_path, tiny_base, monkeypatch):
    monkeypatch.chdir(tiny_base.parent)
    ws = api.init(tmp_path / "corgi", "dog", base_model=tiny_base.name)
    stored = ws.manifest().base_model
    assert Path(stored).is_absolute()
    assert Path(stored) == tiny_base.resolve()
    # the workspace works from another folder
    monkeypatch.chdir(tmp_path)
    assert api.native_resolution(open_workspace(tmp_path / "corgi").manifest().base_model) == 32


def test_init_keeps_a_hub_id_as_given(tmp_path):
    ws = api.init(tmp_path / "corgi", "dog", base_model="some-org/some-model", identifier="zwx")
    m = ws.manifest()
    assert (m.base_model, m.identifier, m.class_noun) == ("some-org/some-model", "zwx", "dog")
    assert m.train.resolution == Manifest(class_noun="dog").train.resolution  # unknown: the default stays


def test_init_copies_images_and_skips_hidden_files(tmp_path, photos):
    (photos / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (photos / "._00.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    ws = api.init(tmp_path / "corgi", "dog", images=photos)
    copied = sorted(p.name for p in ws.instance_dir.iterdir())
    assert copied == ["00.jpg", "01.jpg", "02.jpg"]
    for name in copied:
        assert (ws.instance_dir / name).read_bytes() == (photos / name).read_bytes()


def test_init_brings_each_photos_caption_file_along(tmp_path, photos):
    (photos / "01.txt").write_text("a photo of {identifier} {class} on a sofa")
    (photos / "notes.txt").write_text("not a caption: no photo of that name")
    ws = api.init(tmp_path / "corgi", "dog", images=photos)
    assert sorted(p.name for p in ws.instance_dir.iterdir()) == ["00.jpg", "01.jpg", "01.txt", "02.jpg"]
    assert (ws.instance_dir / "01.txt").read_text() == "a photo of {identifier} {class} on a sofa"


def test_init_reads_native_resolution_from_the_model(tmp_path, tiny_base):
    ws = api.init(tmp_path / "corgi", "dog", base_model=str(tiny_base))
    assert ws.manifest().train.resolution == 32
    assert api.native_resolution(str(tiny_base)) == 32


def test_init_without_class_noun(tmp_path):
    with pytest.raises(DboothError, match="--class"):
        api.init(tmp_path / "corgi", None)
    assert not (tmp_path / "corgi").exists()
