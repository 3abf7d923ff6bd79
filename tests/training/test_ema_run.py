"""EMA in real runs: it does not disturb training, the output uses it, and resume restores it exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from interrupt import InterruptAt

from dbooth import api

EMA = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2, "train.validation_every": 0,
       "train.lora.rank": 4, "prior.enabled": False, "train.ema.decay": 0.5}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_ema_output_is_the_average_and_leaves_training_alone(make_workspace):
    plain = load_file(api.train(make_workspace("plain", **{**EMA, "train.ema.enabled": False})).run.lora_file)
    live = load_file(api.train(make_workspace("live", **{**EMA, "train.ema.enabled": True,
                                                         "train.ema.use_for_output": False})).run.lora_file)
    ema_run = api.train(make_workspace("ema", **{**EMA, "train.ema.enabled": True})).run
    averaged = load_file(ema_run.lora_file)
    assert ema_run.info()["options"]["ema"] == {"decay": 0.5, "every": 1, "output": True}  # run.json says so
    assert _same(plain, live)  # keeping an average changes nothing in the trained weights
    assert not _same(plain, averaged)


def test_resume_with_ema_matches_uninterrupted(make_workspace):
    settings = {**EMA, "train.ema.enabled": True, "train.ema.on_cpu": True}
    straight = api.train(make_workspace("straight", **settings)).run
    ws = make_workspace("resumed", **settings)
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(3))
    from dbooth.workspace.folder import find_run

    interrupted = find_run(ws, complete=False)
    assert (interrupted.checkpoints()[-1] / "ema.safetensors").is_file()
    result = api.train(ws, resume=True)
    a, b = load_file(straight.lora_file), load_file(result.run.lora_file)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")
