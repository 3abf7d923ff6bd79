"""Photos, captions and run outputs that lead out of the workspace (symlinks, ``..``) are refused."""

from __future__ import annotations

import os
import shutil

import pytest

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.workspace.paths import escapes, require_inside


def test_escapes(tmp_path):
    root = tmp_path / "ws"
    (root / "instance").mkdir(parents=True)
    assert not escapes(root / "instance" / "a.jpg", root)
    assert escapes(root / "instance" / ".." / ".." / "secret.jpg", root)
    assert escapes(tmp_path / "elsewhere.jpg", root)
    (root / "instance" / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    assert escapes(root / "instance" / "link.jpg", root)
    with pytest.raises(DboothError, match=r"1 images lead outside the workspace .*instance/link.jpg -> .*elsewhere"):
        require_inside([root / "instance" / "link.jpg"], root, "images")


def test_a_photo_linked_from_outside_is_refused_before_training(make_workspace, tmp_path):
    ws = make_workspace(**{"prior.enabled": False})
    secret = tmp_path / "not-yours.jpg"
    shutil.copy2(next(ws.instance_dir.glob("*.jpg")), secret)
    (ws.instance_dir / "zz.jpg").symlink_to(secret)
    with pytest.raises(DboothError, match="zz.jpg -> .*not-yours.jpg"):
        api.train(ws)
    assert not ws.runs_dir.exists() or not list(ws.runs_dir.iterdir())


def test_a_caption_file_linked_from_outside_is_refused(make_workspace, tmp_path):
    ws = make_workspace(**{"prior.enabled": False, "instance_captions": "files"})
    secret = tmp_path / "secret.txt"
    secret.write_text("a photo of sks dog\n")
    for photo in ws.instance_dir.glob("*.jpg"):
        photo.with_suffix(".txt").write_text("a photo of sks dog\n")
    victim = sorted(ws.instance_dir.glob("*.txt"))[0]
    victim.unlink()
    victim.symlink_to(secret)
    with pytest.raises(DboothError, match="caption files lead outside"):
        api.train(ws)


def test_a_link_loop_among_the_photos_is_named(make_workspace):
    ws = make_workspace(**{"prior.enabled": False})
    os.symlink("loop.jpg", ws.instance_dir / "loop.jpg")
    with pytest.raises(DboothError, match=r"loop.jpg \(a broken link or a link loop\)"):
        api.train(ws)


def test_export_refuses_run_outputs_linked_from_elsewhere(tmp_path):
    import json

    from dbooth.export.run_info import read_run

    run = tmp_path / "ws" / "runs" / "r1"
    run.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    (run / "final").symlink_to(elsewhere)
    (run / "run.json").write_text(json.dumps({
        "method": "lora", "status": "complete", "lora": {"rank": 4, "alpha": 4}, "base_model": "x",
        "identifier": "sks", "class_noun": "dog", "instance_prompt": "a photo of sks dog", "steps": 1}))
    with pytest.raises(DboothError, match="run outputs lead outside"):
        read_run(run)
