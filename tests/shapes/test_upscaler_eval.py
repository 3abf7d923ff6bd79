"""The upscaler comparison, run with bicubic (no model) and checked against direct computation."""

import numpy as np
import pytest
from PIL import Image

from dbooth_shapes.detail import detail_error, detail_recovery, psnr
from dbooth_shapes.upscaler_eval import (
    class_scenes,
    evaluate_upscaler,
    format_table,
    subject_prompt,
    subject_scenes,
    upscale,
)
from dbooth_shapes.examples import get_example
from dbooth_shapes.world import render


def test_bicubic_scores_match_a_direct_computation():
    r = evaluate_upscaler("bicubic", num_world=2, per_subject=2, subjects=["striped_heart"], seed=1)
    scenes = subject_scenes("striped_heart", 2, seed=1)
    highs = [render(s, 64).resize((256, 256), Image.BICUBIC) for s in scenes]
    got = r["subjects"]["striped_heart"]
    assert got["detail"] == pytest.approx(np.mean([detail_recovery(h, s) for h, s in zip(highs, scenes)]))
    assert got["psnr"] == pytest.approx(np.mean([psnr(h, render(s, 256)) for h, s in zip(highs, scenes)]))
    plain = class_scenes("striped_heart", 2, seed=1)
    plain_highs = [render(s, 64).resize((256, 256), Image.BICUBIC) for s in plain]
    assert got["class_detail_error"] == pytest.approx(np.mean([detail_error(h, s) for h, s in zip(plain_highs, plain)]))
    assert -0.1 < got["detail"] < 0.2 and got["class_detail_error"] < 0.005
    assert r["subject_detail"] == got["detail"]
    assert "| bicubic | striped_heart |" in format_table({"bicubic": r})


def test_evaluation_scenes_are_the_subject_in_new_places_and_its_class_without_it():
    subject = get_example("polka_circle")
    scenes = subject_scenes("polka_circle", 3, seed=0)
    assert all((s.shape, s.pattern, s.colour) == ("circle", "polka", "purple") for s in scenes)
    assert scenes == subject_scenes("polka_circle", 3, seed=0) and scenes != subject_scenes("polka_circle", 3, seed=1)
    plain = class_scenes("polka_circle", 3, seed=0)
    assert all(s.shape == subject.class_noun and s.pattern == "solid" for s in plain)
    assert subject_prompt(scenes[0], "sks") == f"a photo of a sks circle {scenes[0].context}"
    assert subject_prompt(scenes[0], None) == f"a photo of a circle {scenes[0].context}"


def test_upscale_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="bicubic"):
        upscale("lanczos", [], [])


def test_no_world_scenes_skips_world_psnr_only():
    r = evaluate_upscaler("bicubic", num_world=0, per_subject=2, subjects=["striped_heart"], seed=1)
    full = evaluate_upscaler("bicubic", num_world=2, per_subject=2, subjects=["striped_heart"], seed=1)
    assert r["world_psnr"] is None and r["subjects"] == full["subjects"]
    assert "| bicubic | mean |" in format_table({"bicubic": r})
