"""Checkpoints: weights in each, resume state in the newest only, written in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.util.reporting import Reporter
from dbooth.training import checkpointing, loop
from dbooth.training.checkpointing import disk_plan
from dbooth.workspace.folder import find_run, has_resume_state
from interrupt import InterruptAt

FULL = {"train.method": "full", "prior.enabled": False, "train.checkpoint_every": 2, "train.keep_checkpoints": 2}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def _unet(run) -> dict:
    return load_file(run.final_dir / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.slow
def test_older_checkpoints_keep_weights_only_and_still_sample(make_workspace):
    ws = make_workspace("seven", **FULL, **{"train.max_steps": 7, "sample.num_images": 1})
    run = api.train(ws).run
    older, newest = run.checkpoints()
    assert [older.name, newest.name] == ["step-000004", "step-000006"]
    assert not has_resume_state(older) and has_resume_state(newest)
    assert sorted(p.name for p in older.iterdir()) == ["trainable_0.safetensors"]
    assert {"optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= {p.name for p in newest.iterdir()}
    weights = (older / "trainable_0.safetensors").stat().st_size
    # AdamW's two moments make the newest about three times the size of a weights-only checkpoint
    assert 2.5 * weights < _size(newest) < 3.5 * weights

    # step 4's weights are what a 4-step run ends with (same seed and stream), and they sample
    four = api.train(make_workspace("four", **FULL, **{"train.max_steps": 4})).run
    at_four, final_four = load_file(older / "trainable_0.safetensors"), _unet(four)
    assert at_four.keys() == final_four.keys()
    for name in at_four:
        torch.testing.assert_close(at_four[name], final_four[name], rtol=0, atol=0)
    result = api.sample(ws, "a sks dog", run_id=f"{run.id}@4")
    assert result.folder.parent.name == f"{run.id}@step-000004" and len(result.paths) == 1


@pytest.mark.slow
def test_resume_from_the_newest_full_checkpoint_matches_uninterrupted(make_workspace):
    settings = {**FULL, "train.max_steps": 7, "train.lr_scheduler": "linear", "train.crop": "random",
                "train.random_flip": True, "train.ema.enabled": True}
    straight = api.train(make_workspace("straight", **settings)).run
    ws = make_workspace("resumed", **settings)
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(5))
    interrupted = find_run(ws, complete=False)
    older, newest = interrupted.checkpoints()
    assert not has_resume_state(older) and has_resume_state(newest) and interrupted.resume_checkpoint() == newest
    assert (older / "ema.safetensors").is_file()  # the EMA average is part of the weights to pick from
    result = api.train(ws, resume=True)
    a, b = _unet(straight), _unet(result.run)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_a_run_whose_checkpoints_lost_their_resume_state_is_not_resumed(make_workspace):
    ws = make_workspace(**FULL, **{"train.max_steps": 7})
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(5))
    run = find_run(ws, complete=False)
    (run.checkpoints()[-1] / "optimizer.bin").unlink()
    with pytest.raises(DboothError, match=r"hold weights only, no optimizer state to resume from"):
        api.train(ws, resume=True)


def test_the_write_runs_beside_the_next_steps_and_lands_before_the_final_save(make_workspace, monkeypatch):
    stepped = threading.Event()  # set when step 3 is done
    seen = {}
    real_write, real_save = checkpointing.write_weights, loop.save_final

    def slow_write(folder, trainable, ema):
        seen["overlapped"] = stepped.wait(timeout=60)  # a write that blocked training would time out here
        time.sleep(0.5)
        real_write(folder, trainable, ema)

    def save_final(accelerator, manifest, run, models):
        done = run.checkpoints()
        seen["at_final"] = [p.name for p in done if has_resume_state(p)]
        seen["writers"] = [t.name for t in threading.enumerate() if t.name.startswith("dbooth-checkpoint")]
        return real_save(accelerator, manifest, run, models)

    class Steps(Reporter):
        def advance(self, completed: int, **fields) -> None:
            if completed == 3:
                stepped.set()

    monkeypatch.setattr(checkpointing, "write_weights", slow_write)
    monkeypatch.setattr(loop, "save_final", save_final)
    ws = make_workspace(**FULL, **{"train.max_steps": 3})
    api.train(ws, reporter=Steps())
    assert seen == {"overlapped": True, "at_final": ["step-000002"], "writers": []}


def test_ctrl_c_lets_the_checkpoint_in_flight_land(make_workspace, monkeypatch):
    real_write = checkpointing.write_weights

    def slow_write(folder, trainable, ema):
        time.sleep(1.0)
        real_write(folder, trainable, ema)

    monkeypatch.setattr(checkpointing, "write_weights", slow_write)
    ws = make_workspace(**FULL, **{"train.max_steps": 6})
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(3))
    run = find_run(ws, complete=False)
    assert [p.name for p in run.checkpoints()] == ["step-000002"] and has_resume_state(run.checkpoints()[0])
    assert not list(run.checkpoints_dir.glob(".*"))


KILLED_WRITER = """
import sys, time
from pathlib import Path
from dbooth import api
from dbooth.training import state
from dbooth.workspace.folder import open_workspace

real = state.save_file

def stuck(tensors, filename, *args, **kwargs):
    if "step-000004" in filename:
        Path(filename).write_bytes(b"half a checkpoint")
        Path(sys.argv[2]).write_text("writing")
        time.sleep(600)
    return real(tensors, filename, *args, **kwargs)

state.save_file = stuck
api.train(open_workspace(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_kill_during_a_background_write_leaves_the_previous_checkpoint_intact(make_workspace, tmp_path):
    ws = make_workspace(**FULL, **{"train.max_steps": 6})
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(ws.root), str(marker)],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the training process never reached the step-4 write"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = find_run(ws, complete=False)
    assert [p.name for p in run.checkpoints()] == ["step-000002"]
    assert has_resume_state(run.checkpoints()[0])
    assert [p.name for p in run.checkpoints_dir.glob(".step-000004.*.tmp")]  # the abandoned write
    tensors = load_file(run.checkpoints()[0] / "trainable_0.safetensors")
    assert tensors and all(torch.isfinite(t).all() for t in tensors.values())

    result = api.train(ws, resume=True)  # takes over the dead process's lock and clears its leftovers
    assert result.run.dir == run.dir and result.steps == 6
    assert not list(run.checkpoints_dir.glob(".*"))


def test_the_disk_plan_is_keep_weights_and_one_optimizer_state(make_workspace):
    from dbooth.workspace.schema import EmaConfig, TrainConfig

    cfg = TrainConfig(max_steps=800, checkpoint_every=200, keep_checkpoints=2)
    plan = disk_plan(cfg, 1000)
    assert (plan.count, plan.weights, plan.resume_state, plan.steady) == (3, 1000, 2000, 4000)
    assert disk_plan(TrainConfig(max_steps=800, checkpoint_every=0), 1000).steady == 0
    ema = disk_plan(TrainConfig(max_steps=400, checkpoint_every=200, ema=EmaConfig(enabled=True)), 1000)
    assert (ema.count, ema.weights, ema.steady) == (1, 2000, 4000)

    lines = []

    class Lines(Reporter):
        def info(self, message: str) -> None:
            lines.append(message)

    ws = make_workspace(**FULL, **{"train.max_steps": 3})
    api.train(ws, reporter=Lines())
    assert any(line.startswith("checkpoints every 2 steps, the last 1 kept: at most ") for line in lines)
