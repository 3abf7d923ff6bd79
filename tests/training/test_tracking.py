"""TensorBoard event files in the run folder carry the loss curves and validation images."""

from __future__ import annotations

import pytest

from dbooth import api


def test_tensorboard_logs_loss_prior_loss_lr_and_images(make_workspace):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 3, "train.validation_every": 2,
                           "train.validation_images": 1, "sample.steps": 1})
    api.prior(ws)
    result = api.train(ws)
    folder = result.run.dir / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "prior_loss", "lr"} <= set(tags["scalars"])
    losses = events.Scalars("loss")
    assert [e.step for e in losses] == [1, 2, 3]
    assert losses[-1].value == pytest.approx(result.final_loss, rel=1e-5)
    assert "validation/p0" in tags["images"] and events.Images("validation/p0")[0].step == 2


def test_tensorboard_off_writes_nothing(make_workspace):
    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 1, "prior.enabled": False,
                           "train.tensorboard": False})
    run = api.train(ws).run
    assert not (run.dir / "tensorboard").exists()
