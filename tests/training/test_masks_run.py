"""Masked loss in real runs: NAME.mask.png is found beside its photo, checked, used, and never a photo."""

from __future__ import annotations

import pytest
from PIL import Image

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.util.images import scan_folder
from dbooth.workspace.status import workspace_status


def _mask(ws, index: int, size=(96, 96), colour=255):
    photo = sorted(ws.instance_dir.iterdir())[index]
    path = photo.with_name(photo.stem + ".mask.png")
    Image.new("L", size, colour).save(path)
    return path


def test_masks_are_not_photos(make_workspace):
    ws = make_workspace()
    _mask(ws, 0)
    assert len(scan_folder(ws.instance_dir, what="photos", min_side=0).paths) == 3
    assert workspace_status(ws).photos == 3


def test_a_masked_run_records_it_and_trains(make_workspace):
    ws = make_workspace(**{"prior.enabled": True, "train.max_steps": 2})
    mask = _mask(ws, 0, colour=0)
    img = Image.new("L", (96, 96), 0)
    img.paste(255, (20, 20, 70, 70))
    img.save(mask)
    api.prior(ws)
    run = api.train(ws).run
    assert run.info()["options"]["masked_loss"] is True
    off = api.train(ws, {"train.masked_loss": False}).run
    assert off.info()["options"]["masked_loss"] is False


@pytest.mark.parametrize("size, colour, words", [((64, 96), 255, "is 64x96 but"), ((96, 96), 0, "all black")])
def test_a_bad_mask_is_one_line_before_training(make_workspace, size, colour, words):
    ws = make_workspace(**{"prior.enabled": False})
    _mask(ws, 1, size, colour)
    with pytest.raises(DboothError, match=words):
        api.train(ws)
    assert not list(ws.runs_dir.iterdir())  # refused before a run folder exists
