"""The real CLI keeps the run page current: train writes it, eval, sample and export each rewrite it with what
they added, every image and link on it resolves each time, and `dbooth status` names it."""

from __future__ import annotations

import pytest
from page_refs import assert_everything_resolves
from run_cli import run_dbooth
from tiny_encoders import save_tiny_clip, save_tiny_dino


@pytest.mark.slow
def test_train_eval_sample_and_export_each_rewrite_the_run_page(make_workspace, tmp_path):
    dino, clip = save_tiny_dino(tmp_path / "dino"), save_tiny_clip(tmp_path / "clip")
    ws = make_workspace("paged", **{
        "prior.enabled": False, "train.max_steps": 4, "train.checkpoint_every": 2, "train.keep_checkpoints": 2,
        "train.validation_every": 2, "train.validation_images": 1, "eval.dino": str(dino), "eval.clip": str(clip),
        "eval.num_prompts": 1, "eval.images_per_prompt": 2, "eval.class_images": 2,
        "eval.prompt_fidelity_margin": 1.0})

    def after(*args: str) -> tuple[str, list[str]]:
        out = run_dbooth([*args, "-w", str(ws.root)], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        [run] = list((ws.root / "runs").iterdir())
        page = run / "report.html"
        found = assert_everything_resolves(page)
        return page.read_text(encoding="utf-8"), found.ids

    text, ids = after("train", "--lora")
    assert {"summary", "settings", "training", "validation", "files"} <= set(ids)
    assert "evaluation" not in ids and "samples" not in ids and "export/" not in text
    assert "Trained 4 steps" in text and "Not scored yet" in text and "dbooth eval -w" in text

    text, ids = after("eval", "--checkpoints")
    assert "evaluation" in ids and "Not scored yet" not in text and "eval/grid-01-base.png" in text

    text, ids = after("sample", "a photo of {identifier} {class} on the moon", "-n", "2")
    assert "samples" in ids and "a photo of sks dog on the moon" in text

    text, ids = after("export", "--format", "lora")
    assert "export/" in text and "LoRA weights, diffusers format" in text

    status = run_dbooth(["status", "-w", str(ws.root)], cwd=tmp_path)
    [run] = list((ws.root / "runs").iterdir())
    assert f"page: {ws.root / 'runs' / run.name / 'report.html'}" in status.stdout
