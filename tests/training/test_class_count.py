"""`dbooth prior -n N` below prior.num_class_images: training warns, and says how to make N stick."""

from __future__ import annotations

from recorder import Recorder

from dbooth import api


def test_fewer_class_images_than_the_manifest_wants_says_how_to_keep_them(make_workspace):
    ws = make_workspace(**{"prior.num_class_images": 4, "train.max_steps": 1})
    api.prior(ws, {"prior.num_class_images": 2})  # as `dbooth prior -n 2` does
    recorder = Recorder()
    api.train(ws, reporter=recorder)
    [warning] = [w for w in recorder.warnings if "class images present" in w]
    assert warning.startswith("2 of 4 class images present")
    assert "set prior.num_class_images: 2 in dbooth.yaml" in warning and "dbooth prior" in warning
