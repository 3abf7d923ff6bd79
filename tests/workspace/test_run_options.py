"""run.json records the options that change a run, and status / model cards say them back."""

from __future__ import annotations

from pathlib import Path

from dbooth.workspace.config import apply_overrides
from dbooth.export.card import card_metadata, model_card
from dbooth.export.run_info import RunInfo
from dbooth.workspace.run_options import describe_options, run_options
from dbooth.workspace.schema import Manifest


def _train(**overrides):
    return apply_overrides(Manifest(class_noun="dog"), overrides).train


def test_plain_dreambooth_says_nothing():
    options = run_options(_train())
    assert options["optimizer"] == "adamw" and options["ema"] is None and options["snr_gamma"] is None
    assert describe_options(options) == []
    assert describe_options(None) == [] and describe_options({}) == []


def test_every_recorded_option_is_said():
    cfg = _train(**{"train.method": "lora", "train.lora.use_dora": True, "train.lora.use_rslora": True,
                    "train.optimizer": "prodigy", "train.ema.enabled": True, "train.snr_gamma": 5.0,
                    "train.noise_offset": 0.05, "train.min_timestep": 200, "train.input_perturbation": 0.1})
    options = run_options(cfg)
    assert options["dora"] and options["rslora"]
    assert options["ema"] == {"decay": 0.995, "every": 1, "output": True}
    assert describe_options(options) == [
        "DoRA", "rsLoRA", "prodigy", "EMA 0.995 (output is the EMA)", "Min-SNR 5", "offset noise 0.05",
        "timesteps 200-end", "input perturbation 0.1"]


def test_dora_is_not_recorded_for_a_full_fine_tune():
    assert not run_options(_train(**{"train.lora.use_dora": True}))["dora"]


def test_model_card_method_line_names_the_options():
    info = RunInfo(Path("r"), "r1", "lora", "base", "sks", "dog", "a photo of sks dog", 10, False, 8, 8.0,
                   options=("DoRA", "Min-SNR 5"))
    assert "| method | LoRA (rank 8, alpha 8, UNet only); DoRA, Min-SNR 5 |" in model_card(info, "lora", "fp16")
    assert card_metadata(info, "lora", "fp16")["dbooth.options"] == "DoRA, Min-SNR 5"
