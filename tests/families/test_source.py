"""Pickle-based base models are refused unless allowed, and even then a planted pickle never runs."""

from __future__ import annotations

import pickle

import pytest

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.families.source import resolve_model


class Planted:
    """Unpickling this runs ``open(marker, "w")``: what a hostile .ckpt would do with worse code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path, marker):
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Planted(marker)}, f)
    return path


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_a_pickle_is_refused_without_consent(tmp_path, suffix):
    model = plant(tmp_path / f"model{suffix}", tmp_path / "ran")
    with pytest.raises(DboothError) as err:
        resolve_model(str(model))
    assert "pickle" in str(err.value) and "--allow-pickle" in str(err.value) and ".safetensors" in str(err.value)
    assert resolve_model(str(model), allow_pickle=True).kind == "single_file"


def test_init_refuses_a_pickle_base_and_writes_nothing(tmp_path):
    model = plant(tmp_path / "model.ckpt", tmp_path / "ran")
    with pytest.raises(DboothError, match="pickle"):
        api.init(tmp_path / "ws", "dog", base_model=str(model))
    assert not (tmp_path / "ws").exists()
    assert not (tmp_path / "ran").exists()


def test_even_an_allowed_pickle_is_loaded_weights_only(tmp_path):
    from dbooth.families.loading import load_pipeline

    model = plant(tmp_path / "model.ckpt", tmp_path / "ran")
    ws = api.init(tmp_path / "ws", "dog", base_model=str(model), allow_pickle=True)
    assert ws.manifest().allow_pickle is True
    with pytest.raises(DboothError, match="cannot be read as a checkpoint"):
        load_pipeline(str(model), allow_pickle=True)
    assert not (tmp_path / "ran").exists()  # the planted code never ran
