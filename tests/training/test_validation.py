"""Validation borrows the parked VAE and text encoders onto the training device and puts them back after."""

from __future__ import annotations

import pytest

from dbooth.training.validation import on_device


class Part:
    """Stands in for a model: where it is, and every move made."""

    def __init__(self, device: str):
        self.device, self.moves = device, []

    def parameters(self):  # where its weights are, as dbooth.families.base.device_of reads it
        yield self

    def to(self, device):
        self.moves.append(device)
        self.device = device
        return self


def test_parked_parts_come_to_the_device_for_the_block_and_go_back():
    vae, text, unet = Part("cpu"), Part("cpu"), Part("cuda")
    with on_device("cuda", [vae, text, unet, None]):
        assert (vae.device, text.device, unet.device) == ("cuda", "cuda", "cuda")
    assert (vae.device, text.device) == ("cpu", "cpu") and unet.moves == []  # already there: left alone


def test_they_go_back_when_the_block_fails():
    text = Part("cpu")
    with pytest.raises(RuntimeError), on_device("cuda", [text]):
        raise RuntimeError("sampling failed")
    assert text.device == "cpu" and text.moves == ["cuda", "cpu"]
