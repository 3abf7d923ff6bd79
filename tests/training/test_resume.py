"""An interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from interrupt import InterruptAt
from dbooth import api
from dbooth.training.losses import loss_from_rows as _loss_from_rows
from dbooth.util.reporting import Reporter


def _final_tensors(run, method):
    if method == "lora":
        return load_file(run.lora_file)
    return load_file(run.final_dir / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_matches_uninterrupted(make_workspace, method):
    settings = {"train.method": method, "train.max_steps": 4, "train.checkpoint_every": 2,
                "train.lr_scheduler": "linear", "train.crop": "random", "train.random_flip": True}
    straight_ws = make_workspace("straight", **settings)
    api.prior(straight_ws)
    straight = api.train(straight_ws).run

    resumed_ws = make_workspace("resumed", **settings)
    api.prior(resumed_ws)
    with pytest.raises(KeyboardInterrupt):
        api.train(resumed_ws, reporter=InterruptAt(3))
    from dbooth.workspace.folder import find_run

    interrupted = find_run(resumed_ws, complete=False)
    assert interrupted.info()["status"] == "interrupted"
    assert [p.name for p in interrupted.checkpoints()] == ["step-000002"]
    result = api.train(resumed_ws, resume=True)
    assert result.run.dir == interrupted.dir and result.steps == 4

    a, b = _final_tensors(straight, method), _final_tensors(result.run, method)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
def test_sdxl_resume_matches_uninterrupted(tmp_path, tiny_sdxl_base, photos):
    from dbooth.workspace.config import apply_overrides, write_manifest
    from dbooth.workspace.folder import find_run

    settings = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2, "train.crop": "random",
                "train.random_flip": True, "train.train_text_encoder": True, "prior.num_class_images": 2,
                "prior.steps": 2, "train.validation_every": 0}

    def workspace(name):
        ws = api.init(tmp_path / name, "dog", base_model=str(tiny_sdxl_base), images=photos)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), settings))
        api.prior(ws)
        return ws

    straight = api.train(workspace("straight")).run
    ws = workspace("resumed")
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(3))
    assert find_run(ws, complete=False).info()["status"] == "interrupted"
    result = api.train(ws, resume=True)
    a, b = load_file(straight.lora_file), load_file(result.run.lora_file)
    assert a.keys() == b.keys() and any(k.startswith("text_encoder_2.") for k in a)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_checkpoints_keep_last_k(make_workspace):
    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 7, "train.checkpoint_every": 2,
                           "train.keep_checkpoints": 2, "prior.enabled": False})
    run = api.train(ws).run
    assert [p.name for p in run.checkpoints()] == ["step-000004", "step-000006"]
    ckpt = run.checkpoints()[-1]
    assert (ckpt / "trainable_0.safetensors").is_file()
    # only the trained tensors, not accelerate's full-model dump
    assert not list(ckpt.glob("model*")) and not list(ckpt.glob("pytorch_model*"))
    assert not list(run.checkpoints_dir.glob(".*"))  # no temp folders left behind


@pytest.mark.slow
@pytest.mark.parametrize("class_shapes", ["bucketed", "square"])
def test_bucketed_resume_matches_uninterrupted(make_workspace, monkeypatch, class_shapes):
    """Wide, tall and square photos in their buckets, with class images made at the same buckets (each step
    one UNet call) or square ones from before bucketed priors (non-square steps train them apart). The loss
    history of the resumed run holds each step once and matches the uninterrupted run's."""
    from PIL import Image

    from dbooth.training import step
    from dbooth.training.history import HISTORY_FILE, read_history
    from dbooth.workspace.folder import find_run

    apart, batches = [], []
    monkeypatch.setattr(step, "loss_from_rows", lambda *a: apart.append(1) or _loss_from_rows(*a))

    def draw(*args, **kwargs):
        batch = step.draw_batch(*args, **kwargs)
        batches.append((tuple(batch.latents.shape[-2:]), batch.latents.shape[0], len(batch.apart)))
        return batch

    monkeypatch.setattr("dbooth.training.loop.draw_batch", draw)

    settings = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2, "train.buckets": True,
                "train.crop": "random", "train.random_flip": True}
    runs = []
    for name in ("straight", "resumed"):
        ws = make_workspace(name, **settings)
        for photo, size in zip(sorted(ws.instance_dir.iterdir()), [(160, 96), (96, 160), (96, 96)]):
            Image.open(photo).resize(size).save(photo)
        api.prior(ws, {"train.buckets": class_shapes == "bucketed"})
        if name == "resumed":
            with pytest.raises(KeyboardInterrupt):
                api.train(ws, reporter=InterruptAt(3))
            interrupted = find_run(ws, complete=False)
            assert interrupted.info()["options"]["buckets"] is True
            assert [r["step"] for r in read_history(interrupted.dir / HISTORY_FILE)] == [1, 2, 3]
            runs.append(api.train(ws, resume=True).run)
        else:
            runs.append(api.train(ws).run)
    # square class images beside non-square buckets go through the UNet apart; bucketed ones never do
    assert bool(apart) == (class_shapes == "square")
    wide_or_tall = [b for b in batches if b[0][0] != b[0][1]]
    assert wide_or_tall
    if class_shapes == "bucketed":  # photo and class rows in one tensor: one UNet call
        assert all(rows == 2 and not extra for _, rows, extra in wide_or_tall)
    else:
        assert all(rows == 1 and extra == 1 for _, rows, extra in wide_or_tall)
    a, b = (_final_tensors(r, "lora") for r in runs)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")
    straight, resumed = (read_history(r.dir / HISTORY_FILE) for r in runs)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # step 3 ran twice, recorded once
    for x, y in zip(straight, resumed):
        assert x.keys() == y.keys() and x["prior_loss"] is not None
        for key in x:
            assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-7), (x["step"], key)
