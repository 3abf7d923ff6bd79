"""Stage (b)'s manifest: the upscaler section in place of train's settings, nothing of stage (a) leaking in."""

from __future__ import annotations

import pytest

from dbooth.workspace.config import apply_overrides, load_manifest
from dbooth.util.errors import DboothError
from dbooth.workspace.schema import Manifest
from dbooth.workspace.stages import check_stage, upscaler_manifest, upscaler_overrides


def test_old_manifests_without_the_section_load_with_its_defaults(tmp_path):
    (tmp_path / "dbooth.yaml").write_text("class_noun: dog\ntrain:\n  max_steps: 100\n")
    m = load_manifest(tmp_path / "dbooth.yaml")
    assert m.upscaler.base == "stabilityai/stable-diffusion-x4-upscaler"
    assert (m.upscaler.method, m.upscaler.noise_level, m.upscaler.prior, m.upscaler.resolution) == ("full", 10, True, None)


def test_upscaler_manifest_takes_the_section_and_keeps_the_rest(tiny_upscaler_base):
    m = apply_overrides(Manifest(class_noun="dog"), {
        "train.learning_rate": 3e-4, "train.method": "lora", "train.buckets": True, "train.train_text_encoder": True,
        "train.batch_size": 2, "train.lora.rank": 4, "prior.enabled": True,
        "upscaler.base": str(tiny_upscaler_base), "upscaler.method": "full", "upscaler.max_steps": 7,
        "upscaler.prior": False, "upscaler.checkpoint_every": 3, "upscaler.validation_every": 0})
    b = upscaler_manifest(m)
    assert b.base_model == str(tiny_upscaler_base)
    assert (b.train.method, b.train.max_steps, b.train.checkpoint_every, b.train.validation_every) == ("full", 7, 3, 0)
    assert b.train.learning_rate is None and b.train.resolved_learning_rate() == 5e-6  # not stage (a)'s 3e-4
    assert b.train.resolution == 64  # null: the upscaler's own (16 latent x 4)
    assert (b.train.buckets, b.train.train_text_encoder, b.prior.enabled) == (False, False, False)
    assert (b.train.batch_size, b.train.lora.rank) == (2, 4)  # the rest comes from train
    assert b.upscaler == m.upscaler  # kept, so a resumed run still knows its noise level
    assert upscaler_manifest(apply_overrides(m, {"upscaler.resolution": 128})).train.resolution == 128


def test_command_line_options_map_to_the_upscaler_settings():
    mapped = upscaler_overrides({"train.max_steps": 5, "train.method": "lora", "train.learning_rate": 1e-3,
                                 "prior.enabled": False, "train.batch_size": 2, "train.seed": None})
    assert mapped == {"upscaler.max_steps": 5, "upscaler.method": "lora", "upscaler.learning_rate": 1e-3,
                      "upscaler.prior": False, "train.batch_size": 2, "train.seed": None}
    with pytest.raises(DboothError, match="--train-text-encoder"):
        upscaler_overrides({"train.train_text_encoder": True})


def test_each_stage_takes_only_its_kind_of_model():
    from dbooth.families import SD1, SD_X4_UPSCALER

    check_stage(SD1, "base", "x")
    check_stage(SD_X4_UPSCALER, "upscaler", "x")
    with pytest.raises(DboothError, match="train --upscaler"):
        check_stage(SD_X4_UPSCALER, "base", "up")
    with pytest.raises(DboothError, match="not an upscaler"):
        check_stage(SD1, "upscaler", "sd")
