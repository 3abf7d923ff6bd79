"""instance_captions: files — each photo trains with its own NAME.txt caption."""

from __future__ import annotations

import pytest

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.families.base import Family


def _write_captions(ws, texts):
    photos = sorted(p for p in ws.instance_dir.iterdir() if p.suffix != ".txt")
    for photo, text in zip(photos, texts):
        photo.with_suffix(".txt").write_text(text)
    return photos


def test_each_photo_trains_with_its_own_caption(make_workspace, monkeypatch):
    ws = make_workspace(instance_captions="files", **{"prior.enabled": False, "train.max_steps": 2})
    photos = _write_captions(ws, ["a {identifier} {class} on the beach", "sks dog in the snow",
                                  "a photo of {identifier} {class}\n"])
    seen = []
    real = Family.tokenize
    monkeypatch.setattr(Family, "tokenize", lambda self, toks, prompts, **kw: seen.append(list(prompts)) or real(self, toks, prompts, **kw))
    run = api.train(ws).run
    expected = ["a sks dog on the beach", "sks dog in the snow", "a photo of sks dog"]
    assert seen[0] == expected  # what the text encoder is given, one prompt per photo
    assert run.info()["instance_captions"] == {p.name: c for p, c in zip(photos, expected)}


def test_missing_caption_files_are_listed_before_a_run_starts(make_workspace):
    ws = make_workspace(instance_captions="files", **{"prior.enabled": False})
    photos = _write_captions(ws, ["a {identifier} {class}"])
    with pytest.raises(DboothError) as err:
        api.train(ws)
    message = str(err.value)
    assert all(p.with_suffix(".txt").name in message for p in photos[1:]) and photos[0].stem + ".txt" not in message
    assert "instance_captions: prompt" in message
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


def test_a_caption_without_the_identifier_is_refused(make_workspace):
    ws = make_workspace(instance_captions="files", **{"prior.enabled": False})
    _write_captions(ws, ["a {identifier} {class}", "a dog on the beach", "{identifier}"])
    with pytest.raises(DboothError, match=r"without the identifier 'sks': 01\.txt"):
        api.train(ws)


def test_caption_placeholders_are_checked(make_workspace):
    ws = make_workspace(instance_captions="files", **{"prior.enabled": False})
    _write_captions(ws, ["a {identifier} {clas}"] * 3)
    with pytest.raises(DboothError, match=r"caption file .*00\.txt: unknown placeholder \{clas\}"):
        api.train(ws)
