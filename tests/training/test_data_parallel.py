"""Two processes (gloo, on the CPU) with batch 1 train the weights one process trains with batch 2.

One ``dbooth train --processes 2`` run (the real ``accelerate launch``, torchrun underneath) is
compared with in-process runs of the same workspace settings: straight through with batch 2, and
resumed in one process from the two-process run's mid-run checkpoint. A run with batch 1 in one
process is the control: it sees half the samples, and its weights are far outside the tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from drawn import draw_photos
from recorder import Recorder
from safetensors.torch import load_file

import dbooth
from dbooth import api
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.workspace.folder import find_run, list_runs

pytestmark = pytest.mark.slow

# AdamW's first steps move each weight by about the learning rate (1e-4 here) whatever its gradient's
# size, so two runs that differ only in the order floating-point sums are taken agree to ~1e-7 on
# weights that moved ~4e-4; a run that saw other samples or noise is off by ~1e-4
TOLERANCE = 2e-6
SETTINGS = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2, "train.lr_scheduler": "linear",
            "train.crop": "random", "train.random_flip": True, "train.validation_every": 0, "train.seed": 7,
            "prior.num_class_images": 4, "prior.steps": 2, "prior.batch_size": 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("dp")
    photos = draw_photos(root / "photos")

    def workspace(name: str, batch_size: int):
        ws = api.init(root / name, "dog", base_model=str(tiny_base), images=photos)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {**SETTINGS, "train.batch_size": batch_size}))
        if name == "two":
            api.prior(ws)
        else:  # the same class images
            shutil.rmtree(ws.class_dir)
            shutil.copytree(root / "two" / "class", ws.class_dir)
        return ws

    two = workspace("two", 1)
    began = time.monotonic()
    launch = dbooth_command(["train", "-w", str(two.root), "--processes", "2"], cwd=root)
    seconds = time.monotonic() - began
    assert launch.returncode == 0, launch.stdout + launch.stderr
    return {"two": two, "launch": launch, "seconds": seconds, "resumed": workspace("resumed", 2),
            "single": api.train(workspace("one", 2)), "control": api.train(workspace("control", 1))}


def dbooth_command(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m dbooth ARGS`` with this checkout's dbooth first on the path."""
    paths = [str(Path(dbooth.__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(p for p in paths if p))
    return subprocess.run([sys.executable, "-m", "dbooth", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _lora(run) -> dict[str, torch.Tensor]:
    return load_file(run.lora_file)


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_with_batch_one_equal_one_process_with_batch_two(runs):
    parallel = find_run(runs["two"])
    info = json.loads(parallel.info_path.read_text())
    assert info["status"] == "complete" and info["processes"] == 2 and info["steps"] == 4
    assert len(list_runs(runs["two"])) == 1  # both processes trained one run folder
    assert sorted(p.name for p in (parallel.checkpoints_dir / "step-000002").glob("random_states_*")) == \
        ["random_states_0.pkl", "random_states_1.pkl"]
    assert (runs["launch"].stdout + runs["launch"].stderr).count("trained 4 steps") == 1  # only the main process reports

    single = runs["single"]
    difference = _max_difference(_lora(parallel), _lora(single.run))
    print(f"2x1 vs 1x2: max |weight difference| {difference:.2e}; 2-process run took {runs['seconds']:.1f} s")
    assert difference <= TOLERANCE
    assert single.final_loss == pytest.approx(info["final_loss"], rel=1e-5)  # the logged loss is the global batch's

    control = runs["control"].run
    assert _max_difference(_lora(parallel), _lora(control)) > 50 * TOLERANCE


def _interrupted_copy(run, ws, **config) -> None:
    """``run`` as if stopped after its step-2 checkpoint, copied into ``ws`` (config.yaml edited with ``config``)."""
    from dbooth.workspace.config import load_manifest, render_manifest

    copy = ws.runs_dir / run.id
    shutil.copytree(run.dir, copy, ignore=shutil.ignore_patterns("final", "tensorboard"))
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "status": "interrupted", "steps": 2}))
    (copy / "config.yaml").write_text(render_manifest(apply_overrides(load_manifest(copy / "config.yaml"), config)))


def test_a_two_process_checkpoint_resumes_in_one_process(runs, tmp_path, tiny_base):
    """A resumed run keeps its per-process batch (here 1, so the global batch halves). Its step-2
    checkpoint, written by 2 processes x 1, resumes in 1 process exactly like one written by 1 process
    x 2: weights, optimizer, the random stream (the main process's) and the LR schedule's position."""
    parallel = find_run(runs["two"])
    _interrupted_copy(parallel, runs["resumed"])
    warnings = Recorder()
    resumed = api.train(runs["resumed"], resume=True, reporter=warnings)
    assert resumed.run.id == parallel.id and resumed.steps == 4
    assert warnings.warnings == ["step-000002 was written by 2 process(es) and this resume runs 1: each keeps batch 1, "
                              "so the global batch changes from 2 to 1; resume with --processes 2 to keep it"]
    assert json.loads(resumed.run.info_path.read_text())["processes"] == 1

    reference_ws = api.init(tmp_path / "reference", "dog", base_model=str(tiny_base), images=runs["resumed"].instance_dir)
    write_manifest(reference_ws.manifest_path, apply_overrides(reference_ws.manifest(), SETTINGS))
    _interrupted_copy(runs["single"].run, reference_ws, **{"train.batch_size": 1})
    shutil.rmtree(reference_ws.class_dir)
    shutil.copytree(runs["resumed"].class_dir, reference_ws.class_dir)
    reference = api.train(reference_ws, resume=True)
    difference = _max_difference(_lora(resumed.run), _lora(reference.run))
    print(f"resumed 2x1 -> 1x1 vs 1x2 -> 1x1: max |weight difference| {difference:.2e}")
    assert difference <= TOLERANCE  # with the LR schedule left at the 2-process position: 2.5e-5
