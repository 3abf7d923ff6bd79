"""Checkpoints: a write that fails (disk full) leaves the previous checkpoint intact and resumable."""

from __future__ import annotations

import errno
from collections import namedtuple

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api
from dbooth.util import diskspace
from dbooth.util.errors import DboothError
from dbooth.training import state
from dbooth.workspace.folder import find_run

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

    from interrupt import InterruptAt

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


def test_continue_schedule_moves_a_schedule_to_the_same_point_under_another_process_count():
    from diffusers.optimization import get_scheduler

    def schedule(processes):  # as the loop builds it: accelerate steps it once per process per optimizer step
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return get_scheduler("linear", optimizer=opt, num_warmup_steps=2 * processes,
                             num_training_steps=10 * processes)

    two = schedule(2)
    for _ in range(2 * 5):  # 5 optimizer steps by 2 processes
        two.step()
    one = schedule(1)
    one.load_state_dict(two.state_dict())
    state.continue_schedule(one, saved=2, processes=1)
    reference = schedule(1)
    for _ in range(5):
        reference.step()
    one.step(), reference.step()
    assert one.get_last_lr() == pytest.approx(reference.get_last_lr())
    unchanged = schedule(2)
    unchanged.load_state_dict(two.state_dict())
    state.continue_schedule(unchanged, saved=2, processes=2)
    assert unchanged.last_epoch == two.last_epoch


def test_a_checkpoint_records_its_process_count(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "trainable_0.safetensors"), metadata={"processes": "4"})
    assert state.saved_processes(tmp_path) == 4
    save_file({"w": torch.zeros(1)}, str(tmp_path / "trainable_0.safetensors"))  # written before it was recorded
    assert state.saved_processes(tmp_path) == 1


def test_every_process_takes_over_the_main_processes_random_stream():
    import random

    import numpy as np

    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    main = {"random_state": random.getstate(), "numpy_random_seed": np.random.get_state(),
            "torch_manual_seed": torch.get_rng_state()}
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99), random.seed(99), np.random.seed(99)  # another process's stream
    state._apply_rng(main, torch.device("cpu"))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
