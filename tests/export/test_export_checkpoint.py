"""Exports of a checkpoint (``RUN@STEP``, ``RUN@best``): every format holds the weights saved at that step.

Step 2 of a 4-step run equals the final weights of a 2-step run with the same seed, so each export of
``long@2`` is compared with the short run's final weights, and with the long run's final ones (which differ).
"""

from __future__ import annotations

import json

import pytest
from diffusers import StableDiffusionPipeline
from safetensors import safe_open

from export_fakes import max_diff, text_probe, unet_probe
from dbooth import api
from dbooth.util.errors import DboothError


def _pair(make_workspace, method: str):
    lr = 1e-3 if method == "full" else 5e-2  # two steps visibly move the weights
    common = {"train.method": method, "prior.enabled": False, "train.learning_rate": lr,
              "train.train_text_encoder": True}
    short = make_workspace("short", **common, **{"train.max_steps": 2})
    long = make_workspace("long", **common, **{"train.max_steps": 4, "train.checkpoint_every": 2})
    api.train(short)
    return api.find_run(short), long, api.train(long).run


def _load(path):
    return StableDiffusionPipeline.from_pretrained(path, local_files_only=True)


def _probes(pipe):
    return unet_probe(pipe.unet), text_probe(pipe.text_encoder)


def _same(a, b) -> bool:
    return all(max_diff(x, y) < 1e-5 for x, y in zip(a, b))


@pytest.mark.slow
def test_every_full_format_of_a_checkpoint_holds_that_steps_weights(make_workspace, tiny_base):
    short_run, ws, run = _pair(make_workspace, "full")
    want, final = _probes(_load(short_run.final_dir)), _probes(_load(run.final_dir))
    assert not _same(want, final)  # steps 3 and 4 changed the model: the test can tell them apart

    folder = api.export(ws, "diffusers", run_id=f"{run.id}@2")
    at_2 = f"long-{run.id.removesuffix('-full')}@2"  # the workspace, the run's start time, the step
    assert folder == run.dir / "export" / at_2
    assert _same(_probes(_load(folder)), want)
    readme = (folder / "README.md").read_text()
    assert f"# {run.id}@2:" in readme and "| training steps | 2 (checkpoint step-000002 of a 4-step run) |" in readme

    single = api.export(ws, "single-file", run_id=f"{run.id}@2")
    assert single.name == f"{at_2}.safetensors"
    pipe = StableDiffusionPipeline.from_single_file(str(single), config=str(tiny_base), local_files_only=True)
    assert _same(_probes(pipe), want)
    with safe_open(str(single), "pt") as f:
        meta = f.metadata()
    assert (meta["dbooth.checkpoint"], meta["dbooth.steps"], meta["dbooth.run_steps"]) == ("step-000002", "2", "4")

    # RUN@best follows run.json; the final weights stay what a plain export writes
    info = run.info()
    run.write_info(info | {"best_checkpoint": "step-000002"})
    best = api.export(ws, "diffusers", run_id=f"{run.id}@best", out=folder.parent / "best")
    assert _same(_probes(_load(best)), want)
    plain = api.export(ws, "diffusers")
    assert plain.name == at_2.removesuffix("@2") and _same(_probes(_load(plain)), final)


@pytest.mark.slow
def test_every_lora_format_of_a_checkpoint_holds_that_steps_adapters(make_workspace, tiny_base):
    short_run, ws, run = _pair(make_workspace, "lora")

    def with_lora(path):
        pipe = _load(tiny_base)
        pipe.load_lora_weights(str(path))
        return _probes(pipe)

    want, final = with_lora(short_run.final_dir), with_lora(run.final_dir)
    assert not _same(want, final)

    lora = api.export(ws, "lora", run_id=f"{run.id}@2")
    at_2 = f"long-{run.id.removesuffix('-lora')}@2"  # the workspace, the run's start time, the step
    assert lora == run.dir / "export" / f"{at_2}-diffusers.safetensors"
    assert _same(with_lora(lora), want)
    kohya = api.export(ws, "lora-kohya", run_id=f"{run.id}@2")
    assert kohya == run.dir / "export" / f"{at_2}.safetensors"
    assert _same(with_lora(kohya), want)
    with safe_open(str(kohya), "pt") as f:
        meta = f.metadata()
    assert meta["ss_max_train_steps"] == "2" and meta["dbooth.checkpoint"] == "step-000002"
    assert f"{run.id}@2" in meta["ss_training_comment"]
    assert "checkpoint step-000002 of a 4-step run" in kohya.with_suffix(".md").read_text()

    merged = api.export(ws, "diffusers", run_id=f"{run.id}@2")
    assert merged == run.dir / "export" / f"{at_2}-merged"
    assert _same(_probes(_load(merged)), want)
    fused = api.merge_lora(ws, run_id=f"{run.id}@2")
    assert fused == run.dir / f"{at_2}-merged"  # merge-lora names its folder as export does, in the run folder
    assert _same(_probes(_load(fused)), want)
    assert json.loads((fused / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert not list(run.dir.rglob("dbooth-checkpoint-lora-*"))  # the checkpoint's LoRA file was temporary


def test_a_missing_checkpoint_is_one_line_naming_the_saved_ones(make_workspace):
    ws = make_workspace("few", **{"prior.enabled": False, "train.max_steps": 2, "train.checkpoint_every": 1})
    run = api.train(ws).run
    with pytest.raises(DboothError, match=r"has no checkpoint '7' \(saved steps: 1\)"):
        api.export(ws, "diffusers", run_id=f"{run.id}@7")
    with pytest.raises(DboothError, match="no best checkpoint chosen yet"):
        api.merge_lora(ws, run_id=f"{run.id}@best")
