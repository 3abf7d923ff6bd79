"""Warnings for a poor identifier, ``--identifier auto``, and both through ``init`` and ``init --add-subject``."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
from recorder import Recorder

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.identifiers import (
    check_identifier,
    free_candidates,
    load_vocabulary,
    pick_identifier,
)


def test_a_rare_single_token_gets_no_warning(clip_like):
    vocab = load_vocabulary(str(clip_like))
    assert check_identifier("sks", vocab) == [] and check_identifier("XQ", vocab) == []


def test_a_split_identifier_is_warned_with_its_pieces_and_free_rare_tokens(clip_like):
    vocab = load_vocabulary(str(clip_like))
    [warning] = check_identifier("zwx", vocab, used=["xq"])
    assert "3 tokens (z + w + x)" in warning and "section 4.2" in warning
    assert "e.g. vrz, qwp, brr" in warning  # the first free candidates; xq is in use


def test_an_ordinary_word_is_warned_with_why_it_matters(clip_like):
    vocab = load_vocabulary(str(clip_like))
    [warning] = check_identifier("Dog", vocab)
    assert "ordinary word" in warning and "unlearn" in warning
    assert f"token {vocab.words['dog']} of {vocab.size}" in warning
    [builtin] = check_identifier("star", load_vocabulary("builtin:shapes"))
    assert "a word of its training captions" in builtin and "e.g. sks, zwx, qlt" in builtin


def test_auto_takes_the_first_free_candidate(clip_like):
    vocab = load_vocabulary(str(clip_like))
    assert free_candidates(vocab, ["XQ", "vrz"])[:2] == ["qwp", "brr"]
    assert pick_identifier(str(clip_like)) == vocab.candidates()[0] == "xq"
    assert pick_identifier("builtin:shapes", ["sks"]) == "zwx"
    with pytest.raises(DboothError, match="no free rare single token"):
        pick_identifier(str(clip_like), vocab.candidates())


def test_init_auto_and_add_subject_auto(tmp_path):
    ws = api.init(tmp_path / "ws", "star", base_model="builtin:shapes", identifier="auto")
    assert ws.manifest().identifier == "sks"
    api.add_subject(ws, "second", None, identifier="auto", example="checkered_star")
    api.add_subject(ws, "third", None, identifier="auto", example="polka_circle")
    assert [s.identifier for s in ws.manifest().subjects] == ["zwx", "qlt"]


def test_init_warns_through_the_reporter_and_writes_the_workspace_anyway(tmp_path, clip_like):
    seen = Recorder()
    ws = api.init(tmp_path / "ws", "dog", base_model=str(clip_like), identifier="dog", reporter=seen)
    assert ws.manifest().identifier == "dog"
    [warning] = seen.warnings
    assert "'dog'" in warning and "ordinary word" in warning
    quiet = Recorder()
    api.add_subject(ws, "kitty", "cat", identifier="hmv", example="checkered_star", reporter=quiet)
    assert quiet.warnings == [] and quiet.infos == []
    split = Recorder()
    api.add_subject(ws, "other", "cat", identifier="zwx", example="polka_circle", reporter=split)
    assert len(split.warnings) == 1 and "3 tokens" in split.warnings[0]
    assert "hmv" not in split.warnings[0]  # in use by kitty: not suggested


def test_init_offline_with_an_uncached_hub_model_notes_the_skip(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    seen = Recorder()
    api.init(tmp_path / "ws", "dog", base_model="some-org/not-downloaded", identifier="dog", reporter=seen)
    assert seen.warnings == [] and len(seen.infos) == 1 and "not checked" in seen.infos[0]
    with pytest.raises(DboothError, match="--identifier auto needs the base model's tokenizer"):
        api.init(tmp_path / "ws2", "dog", base_model="some-org/not-downloaded", identifier="auto")
    assert not (tmp_path / "ws2").exists()


def test_identifiers_lists_free_candidates_and_checks_the_workspaces(tmp_path):
    ws = api.init(tmp_path / "ws", "star", base_model="builtin:shapes", identifier="star")
    result = api.identifiers(ws, num=3)
    assert result.candidates == ["sks", "zwx", "qlt"] and result.used == ["star"]
    assert len(result.checks["star"]) == 1 and "ordinary word" in result.checks["star"][0]
    other = api.identifiers(ws, check=["sks", "dog"])
    assert other.checks["sks"] == [] and "splits" in other.checks["dog"][0]
    assert other.candidates == ["sks", "zwx", "qlt", "vyr", "pxo", "mkv"]  # checking sks does not use it
