"""``kill -9`` at random moments of the real CLI: nothing half-written, and resuming ends bitwise where an
uninterrupted run ends.

CI runs a few kills per verb; ``DBOOTH_FULL_CRASH_TEST=1`` runs 20 per verb (prior, train, export, merge-lora).
Kill times are drawn between a fifth of and the full duration of an uninterrupted run of the same command,
so they land in model loading, steps, checkpoint writes and the final save alike.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from run_cli import subprocess_env

from dbooth import api
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest
from dbooth.util.pngmeta import read_record
from dbooth.workspace.folder import list_runs

pytestmark = pytest.mark.slow

FULL = os.environ.get("DBOOTH_FULL_CRASH_TEST") == "1"
KILLS = {"prior": 20, "train": 20, "export": 20, "merge-lora": 20} if FULL else {
    "prior": 2, "train": 3, "export": 1, "merge-lora": 1}
SETTINGS = {"prior.num_class_images": 4, "prior.steps": 2, "prior.batch_size": 1, "train.method": "lora",
            "train.max_steps": 8, "train.checkpoint_every": 2, "train.keep_checkpoints": 2,
            "train.validation_every": 0}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dbooth", *args], cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(args: list[str], cwd: Path) -> float:
    began = time.monotonic()
    proc = start(args, cwd)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"dbooth {' '.join(args)}: {err}"
    return time.monotonic() - began


def kill_after(args: list[str], cwd: Path, delay: float) -> bool:
    """Start the command and SIGKILL it after ``delay`` seconds; False when it finished first."""
    proc = start(args, cwd)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def assert_nothing_half_written(ws) -> None:
    """Every file and folder a user can see is complete and loadable (hidden temporaries may remain)."""
    from accelerate.utils.other import load as weights_only_load

    for p in visible(ws.class_dir):
        with Image.open(p) as im:
            im.load()
        assert read_record(p) is not None, p
    for run in list_runs(ws):
        run.info()
        if run.config_path.exists():
            load_manifest(run.config_path)
        resume_state = {"optimizer.bin", "scheduler.bin", "random_states_0.pkl"}
        for ckpt in run.checkpoints():
            names = {p.name for p in visible(ckpt)}
            assert "trainable_0.safetensors" in names, ckpt
            assert load_file(ckpt / "trainable_0.safetensors")
            # older checkpoints keep weights only; the newest always keeps what resuming needs
            if "optimizer.bin" in names or ckpt == run.checkpoints()[-1]:
                assert resume_state <= names, ckpt
                for name in resume_state:
                    weights_only_load(ckpt / name)
        if run.final_dir.exists():
            assert load_file(run.lora_file)
        for out in visible(run.dir / "export"):
            if out.suffix == ".safetensors":
                assert load_file(out)
        for merged in (p for p in visible(run.dir) if p.is_dir() and p.name.endswith("-merged")):  # merge-lora's
            assert (merged / "model_index.json").is_file()
            for f in merged.rglob("*.safetensors"):
                assert load_file(f)


def crash_repeatedly(verb_args, ws, duration: float, kills: int, rng: random.Random, resume=None) -> int:
    killed = 0
    for _ in range(kills):
        args = resume() if resume else verb_args
        killed += kill_after(args, ws.root.parent, rng.uniform(0.2, 1.0) * duration)
        assert_nothing_half_written(ws)
    return killed


def test_kill_minus_nine_loses_nothing_and_resumes_bitwise(tmp_path, tiny_base, photos):
    rng = random.Random(14)

    def workspace(name):
        ws = api.init(tmp_path / name, "dog", base_model=str(tiny_base), images=photos)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), SETTINGS))
        return ws

    straight, crashed = workspace("straight"), workspace("crashed")
    w = ["-w", str(straight.root)]
    t_prior = finish(["prior", *w], tmp_path)
    t_train = finish(["train", *w], tmp_path)
    reference = load_file(list_runs(straight)[-1].lora_file)

    # prior: the same class images as an uninterrupted run, byte for byte
    cw = ["-w", str(crashed.root)]
    crash_repeatedly(["prior", *cw], crashed, t_prior, KILLS["prior"], rng)
    finish(["prior", *cw], tmp_path)
    assert [p.name for p in visible(crashed.class_dir)] == [p.name for p in visible(straight.class_dir)]
    for a, b in zip(visible(crashed.class_dir), visible(straight.class_dir)):
        assert a.read_bytes() == b.read_bytes(), a.name

    # train: resume (or start again when no checkpoint was reached) until done; same final weights, bitwise
    def resume_or_start():
        resumable = [r for r in list_runs(crashed) if not r.complete and r.checkpoints()]
        return ["train", *cw, "--resume"] if resumable else ["train", *cw]

    crash_repeatedly(None, crashed, t_train, KILLS["train"], rng, resume=resume_or_start)
    finish(resume_or_start(), tmp_path)
    done = [r for r in list_runs(crashed) if r.complete]  # more than one when a kill came after the end
    assert done
    for run in done:
        result = load_file(run.lora_file)
        assert result.keys() == reference.keys()
        for name in reference:
            assert torch.equal(result[name], reference[name]), f"{run.id}: {name}"

    # export and merge-lora: the output is complete or absent, and a rerun finishes it
    out = tmp_path / "out.safetensors"
    for verb, args in (("export", ["export", *cw, "--format", "lora-kohya", "--out", str(out), "--force"]),
                       ("merge-lora", ["merge-lora", *cw, "--force"])):
        duration = finish(args, tmp_path)
        crash_repeatedly(args, crashed, duration, KILLS[verb], rng)
        assert not out.exists() or load_file(out)
        finish(args, tmp_path)
        assert_nothing_half_written(crashed)
    assert load_file(out)
    # a finished export or merge clears what the killed ones left behind
    assert not list(tmp_path.glob(".out.safetensors.*")), list(tmp_path.glob(".*"))
    merged = list(done[-1].dir.glob("*-merged"))  # merge-lora's folder, checked by assert_nothing_half_written
    assert len(merged) == 1 and merged[0].name.startswith(f"{crashed.root.name}-"), merged
    assert not list(done[-1].dir.glob(".*-merged.*")), list(done[-1].dir.glob(".*"))
