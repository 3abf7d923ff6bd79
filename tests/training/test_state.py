"""Checkpoints: a write that fails (disk full) leaves the previous checkpoint intact and resumable."""

from __future__ import annotations

import errno
from collections import namedtuple

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api, diskspace
from dbooth.errors import DboothError
from dbooth.training import state
from dbooth.workspace import find_run

SETTINGS = {"train.method": "lora", "train.max_steps": 6, "train.checkpoint_every": 2, "prior.enabled": False}


def test_a_full_disk_mid_checkpoint_keeps_the_previous_one(make_workspace, monkeypatch):
    ws = make_workspace(**SETTINGS)
    real, calls = state.save_file, []

    def fill_up(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if "step-000004" in filename:
            with open(filename, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(state, "save_file", fill_up)
    with pytest.raises(DboothError) as err:
        api.train(ws)
    message = str(err.value)
    assert "checkpoint step-000004" in message and "disk is full" in message
    assert "step-000002 is intact" in message
    run = find_run(ws, complete=False)
    assert run.info()["status"] == "failed"
    assert [p.name for p in run.checkpoints_dir.iterdir()] == ["step-000002"]  # no temporary folder left
    tensors = load_file(run.checkpoints()[0] / "trainable_0.safetensors")
    assert tensors and all(torch.isfinite(t).all() for t in tensors.values())

    monkeypatch.setattr(state, "save_file", real)
    result = api.train(ws, resume=True)
    assert result.run.dir == run.dir and result.steps == 6 and result.run.lora_file.is_file()


def test_too_little_space_for_the_run_is_refused_before_the_first_step(make_workspace, monkeypatch):
    ws = make_workspace(**SETTINGS)
    usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 4096))
    with pytest.raises(DboothError, match=r"not enough free space for run .* needs about .* 4.0 KB free"):
        api.train(ws)
    run = find_run(ws, complete=False)
    assert not run.checkpoints_dir.exists() and not run.final_dir.exists()


@pytest.mark.parametrize("name", ["optimizer.bin", "random_states_0.pkl", "scheduler.bin"])
def test_resume_state_is_loaded_without_running_pickles(make_workspace, tmp_path, name):
    import pickle
    import shutil

    from test_resume import InterruptAt

    class Planted:  # unpickling it would create ``marker``
        def __reduce__(self):
            return (open, (str(marker), "w"))

    marker = tmp_path / "ran"
    ws = make_workspace(**SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(3))
    ckpt = find_run(ws, complete=False).checkpoints()[-1]
    kept = tmp_path / "kept"
    shutil.copy2(ckpt / name, kept)
    with open(ckpt / name, "wb") as f:
        pickle.dump({"state": Planted()}, f)
    with pytest.raises(DboothError) as err:
        api.train(ws, resume=True)
    assert "cannot be loaded safely" in str(err.value) and "step-000002" in str(err.value)
    assert not marker.exists()
    shutil.copy2(kept, ckpt / name)
    assert api.train(ws, resume=True).steps == 6
