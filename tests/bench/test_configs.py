"""Named configurations apply to a real manifest, and the ablation flips exactly one setting per row."""

from __future__ import annotations

import pytest

from dbooth.bench.configs import CONFIGS, ablation, get_config
from dbooth.workspace.config import Manifest, TrainConfig, apply_overrides, manifest_to_dict
from dbooth.util.errors import DboothError


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_is_a_valid_manifest(name):
    m = apply_overrides(Manifest(class_noun="dog"), CONFIGS[name].overrides)
    assert m.train.resolution % 8 == 0


def test_memory_tiers_say_what_they_turn_on():
    full10 = CONFIGS["sd15-full-10gb"].overrides
    assert full10["train.gradient_checkpointing"] and full10["train.optimizer"] == "adamw8bit"
    assert full10["train.cache_latents"] and full10["train.cache_text_embeddings"]
    lora6 = CONFIGS["sd15-lora-6gb"].overrides
    assert lora6["train.method"] == "lora" and lora6["train.gradient_checkpointing"]


def test_unknown_config_suggests_the_closest():
    with pytest.raises(DboothError, match="did you mean shapes-full"):
        get_config("shapes-ful")


@pytest.mark.parametrize("cuda", [False, True])
def test_ablation_rows_change_one_thing(cuda):
    train = manifest_to_dict(Manifest(class_noun="dog"))["train"]
    rows = ablation(train, cuda=cuda)
    assert rows[0].label == "base" and not rows[0].overrides and not rows[0].patches
    labels = [r.label for r in rows]
    assert len(labels) == len(set(labels))
    for row in rows[1:]:
        assert len(row.overrides) + len(row.patches) == 1, row
        for key, value in row.overrides.items():
            now = train
            for part in key.split(".")[1:]:
                now = now[part]
            assert now != value, row  # really a change
    # every speed setting a user can turn on is in the ablation
    keys = {k for r in rows for k in r.overrides}
    assert {"train.cache_latents", "train.cache_text_embeddings", "train.attention", "train.optimizer",
            "train.gradient_checkpointing", "train.mixed_precision", "train.channels_last", "train.allow_tf32",
            "train.compile", "train.ema.enabled", "train.masked_loss", "train.buckets"} <= keys
    assert {r.overrides.get("train.optimizer") for r in rows} >= {"adamw8bit", "adafactor", "prodigy"}
    lora = manifest_to_dict(Manifest(class_noun="dog", train=TrainConfig(method="lora")))["train"]
    assert any(r.overrides == {"train.lora.use_dora": True} for r in ablation(lora, cuda=cuda))
    assert {r.patches.get("adamw") for r in rows} >= {"fused", "foreach", "for-loop"}
    assert any(r.overrides.get("train.mixed_precision") == "fp16" for r in rows) == cuda
    assert {r.label for r in rows if r.cuda_only} == {"adamw 8-bit", "TF32 off"}


def test_sdxl_tiers_say_what_they_turn_on():
    for name in ("sdxl-full", "sdxl-lora", "sdxl-full-24gb", "sdxl-lora-12gb"):
        o = CONFIGS[name].overrides
        assert CONFIGS[name].model == "sdxl" and o["train.resolution"] == 1024
        assert o["train.mixed_precision"] == "bf16" and o["train.attention"] == "sdpa" and o["prior.enabled"]
        assert o["train.cache_latents"] and o["train.cache_text_embeddings"] and o["train.batch_size"] == 1
    full24 = CONFIGS["sdxl-full-24gb"].overrides
    assert full24["train.method"] == "full" and full24["train.gradient_checkpointing"]
    assert full24["train.optimizer"] == "adamw8bit"
    lora12 = CONFIGS["sdxl-lora-12gb"].overrides
    assert lora12["train.method"] == "lora" and lora12["train.gradient_checkpointing"]
    assert "train.optimizer" not in lora12  # plain AdamW: the adapters' state is ~90 MB
