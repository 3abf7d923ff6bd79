"""Several subjects in one model: the manifest list, `init --add-subject`, class images per class, and
training that captions each subject's photos with its own identifier and pairs them with their own class."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dbooth import api
from dbooth.cli.app import app
from dbooth.workspace.config import (
    apply_overrides,
    load_manifest,
    manifest_to_dict,
    render_manifest,
)
from dbooth.util.errors import DboothError
from dbooth.families.base import Family
from dbooth.util.pngmeta import read_record
from dbooth.workspace.subjects import subjects
from dbooth.training import step as step_module


def _two_subjects(make_workspace, photos, **overrides):
    ws = make_workspace(**overrides)
    result = CliRunner().invoke(app, ["init", str(ws.root), "--add-subject", "kitty", "--class", "cat",
                                      "--identifier", "zwx", "--images", str(photos)])
    assert result.exit_code == 0, result.output
    return ws


def test_a_single_subject_manifest_is_unchanged(make_workspace):
    ws = make_workspace()
    assert ws.manifest().subjects == []
    assert "subjects: []" in ws.manifest_path.read_text()
    (only,) = subjects(ws, ws.manifest())
    assert (only.identifier, only.class_noun, only.instance_dir, only.class_dir) == ("sks", "dog", ws.instance_dir,
                                                                                      ws.class_dir)


def test_add_subject_copies_its_photos_and_lists_it(make_workspace, photos):
    ws = _two_subjects(make_workspace, photos)
    m = ws.manifest()
    assert [(s.name, s.identifier, s.class_noun) for s in m.subjects] == [("kitty", "zwx", "cat")]
    assert sorted(p.name for p in (ws.instance_dir / "kitty").iterdir()) == ["00.jpg", "01.jpg", "02.jpg"]
    assert load_manifest(ws.manifest_path) == m and m.train.max_steps == 4  # the other settings are kept
    _, second = subjects(ws, m)
    assert (second.identifier, second.class_noun, second.class_dir) == ("zwx", "cat", ws.class_dir / "cat")
    assert second.manifest.instance_prompt == m.instance_prompt and second.manifest.subjects == []


@pytest.mark.parametrize("args, message", [
    (["--identifier", "sks", "--images", "P"], "'sks' is already identifier"),
    (["--images", "P"], "pass --identifier"),
    (["--identifier", "zwx"], "--images DIR or --example NAME"),
])
def test_add_subject_refuses_what_cannot_train(make_workspace, photos, args, message):
    ws = make_workspace()
    args = [str(photos) if a == "P" else a for a in args]
    result = CliRunner().invoke(app, ["init", str(ws.root), "--add-subject", "kitty", "--class", "cat", *args])
    assert isinstance(result.exception, DboothError) and message in str(result.exception), result.output
    assert ws.manifest().subjects == [] and not (ws.instance_dir / "kitty").exists()


def test_subject_list_errors_name_the_entry(make_workspace):
    m = make_workspace().manifest()
    entry = {"name": "kitty", "identifier": "zwx", "class_noun": "cat"}
    with pytest.raises(DboothError, match=r"subjects\[1\]\.name: 'kitty' names another subject"):
        apply_overrides(m, {"subjects": [entry, dict(entry, identifier="qlt")]})
    with pytest.raises(DboothError, match=r"subjects\[0\]\.class_prompt: subjects of class 'dog' share"):
        apply_overrides(m, {"subjects": [dict(entry, class_noun="dog", class_prompt="a dog")]})
    with pytest.raises(DboothError, match=r"subjects\[0\]\.identifier: must be one word"):
        apply_overrides(m, {"subjects": [dict(entry, identifier="z w")]})
    with pytest.raises(DboothError, match=r"subjects\[0\]\.instance_prompt: must contain \{identifier\}"):
        apply_overrides(m, {"subjects": [dict(entry, instance_prompt="a cat")]})
    two = apply_overrides(m, {"subjects": [entry]})
    assert manifest_to_dict(two)["subjects"][0]["class_prompt"] is None
    assert "subjects: [{class_noun: cat" in render_manifest(two)


def test_prior_generates_class_images_per_class(make_workspace, photos):
    ws = _two_subjects(make_workspace, photos)
    api.prior(ws)
    dogs = sorted(ws.class_dir.glob("*.png"))
    cats = sorted((ws.class_dir / "cat").glob("*.png"))
    assert len(dogs) == len(cats) == 4
    assert read_record(dogs[0])["prompt"] == "a photo of dog" and read_record(cats[0])["prompt"] == "a photo of cat"
    status = CliRunner().invoke(app, ["status", "-w", str(ws.root)])
    assert "subject kitty: zwx cat, photos 3; class images 4 in class/cat" in status.output, status.output


def test_training_captions_each_subject_and_pairs_it_with_its_class(make_workspace, photos, monkeypatch):
    ws = _two_subjects(make_workspace, photos, **{"train.batch_size": 4, "train.max_steps": 3})
    api.prior(ws)
    prompts, batches = [], []
    real_tokenize, real_draw = Family.tokenize, step_module.draw_batch
    monkeypatch.setattr(Family, "tokenize",
                        lambda self, toks, p, **kw: prompts.append(list(p)) or real_tokenize(self, toks, p, **kw))

    def draw(*args, **kwargs):
        batch = real_draw(*args, **kwargs)
        batches.append(batch.captions)
        return batch

    monkeypatch.setattr("dbooth.training.loop.draw_batch", draw)
    run = api.train(ws).run
    assert prompts[0] == ["a photo of sks dog"] * 3 + ["a photo of zwx cat"] * 3 + ["a photo of dog", "a photo of cat"]
    assert len(batches) == 3
    for captions in batches:
        photo_rows, class_rows = captions[:4], captions[4:]
        # each photo's class row is its own class's prompt: dog photos (0-2) with 6, cat photos (3-5) with 7
        assert class_rows == [6 if i < 3 else 7 for i in photo_rows]
    drawn = {i for captions in batches for i in captions[:4]}
    assert drawn & {0, 1, 2} and drawn & {3, 4, 5}  # both subjects were trained
    info = run.info()
    assert [(s["identifier"], s["class_prompt"]) for s in info["subjects"]] == [("sks", "a photo of dog"),
                                                                               ("zwx", "a photo of cat")]
    assert info["identifier"] == "sks"  # the first subject, as exports and eval read it


def test_subjects_of_one_class_share_its_class_images(make_workspace, photos, monkeypatch):
    ws = make_workspace(**{"train.max_steps": 1})
    api.add_subject(ws, "rex", "dog", identifier="zwx", images=photos)
    api.prior(ws)
    assert not (ws.class_dir / "dog").exists() and len(list(ws.class_dir.glob("*.png"))) == 4
    seen = []
    real_draw = step_module.draw_batch
    monkeypatch.setattr("dbooth.training.loop.draw_batch",
                        lambda *a, **k: seen.append(a[3]) or real_draw(*a, **k))
    api.train(ws)
    assert seen == [6]  # one class: the single-subject draw, with the one class prompt after six captions


def test_missing_photos_of_a_further_subject_are_reported_before_a_run(make_workspace, photos):
    ws = make_workspace(**{"prior.enabled": False})
    api.add_subject(ws, "kitty", "cat", identifier="zwx", images=photos)
    for p in (ws.instance_dir / "kitty").iterdir():
        p.unlink()
    with pytest.raises(DboothError, match="no instance images of subject kitty"):
        api.train(ws)
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


def test_class_pick_draws_each_photos_class_image_and_prompt():
    import torch

    pick = step_module.ClassPick.of(image_class=[0, 0, 1, 1, 1], photo_class=[1, 0, 1], first_caption=3)
    assert pick.groups == [[0, 1], [2, 3, 4]] and pick.captions == [3, 4]
    torch.manual_seed(0)
    rows, captions = pick.draw(torch.tensor([0, 1, 2, 1, 0] * 20))
    kinds = [1, 0, 1, 0, 1] * 20
    assert captions == [3 + k for k in kinds]
    assert all(int(r) in pick.groups[k] for r, k in zip(rows, kinds))
    assert {int(r) for r in rows} == {0, 1, 2, 3, 4}  # every class image can be drawn
