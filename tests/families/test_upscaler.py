"""The x4 upscaler family: detected from the model, and trained on exactly the input its pipeline builds."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image

from dbooth.util.errors import DboothError
from dbooth.families import (
    SD1,
    SD_X4_UPSCALER,
    detect_family,
    family_from_configs,
    family_of,
)
from dbooth.families.upscaler import LowResCondition, upscaler_input
from dbooth.util.images import resize_and_crop, shrink, to_tensor
from dbooth.families.source import resolve_model
from dbooth.families.tiny import tiny_pipeline, tiny_upscaler_pipeline


class _Captured(Exception):
    pass


def _pipeline_unet_input(pipe, image, prompt, *, seed, noise_level):
    """What StableDiffusionUpscalePipeline feeds its UNet on the first step (no guidance)."""
    seen = {}

    def hook(module, args, kwargs):
        seen["sample"], seen["t"] = args[0].clone(), args[1]
        seen["class_labels"] = kwargs["class_labels"].clone()
        seen["hidden"] = kwargs["encoder_hidden_states"].clone()
        raise _Captured

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(_Captured):
            pipe(prompt, image=image, num_inference_steps=4, guidance_scale=1.0, noise_level=noise_level,
                 generator=torch.Generator().manual_seed(seed))
    finally:
        handle.remove()
    return seen


def test_detected_from_model_index_and_from_a_loaded_pipeline(tiny_upscaler_base):
    index = json.loads((tiny_upscaler_base / "model_index.json").read_text())
    assert family_from_configs(index, None) is SD_X4_UPSCALER
    assert detect_family(resolve_model(str(tiny_upscaler_base))) is SD_X4_UPSCALER
    assert family_of(tiny_upscaler_pipeline()) is SD_X4_UPSCALER
    assert family_of(tiny_pipeline()) is SD1
    assert SD_X4_UPSCALER.stage == "upscaler" and SD1.stage == "base"


@pytest.mark.parametrize("noise_level", [0, 10, 20])
def test_training_input_equals_what_the_pipeline_feeds_the_unet(noise_level):
    pipe = tiny_upscaler_pipeline()
    low = Image.fromarray((torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy())
    seen = _pipeline_unet_input(pipe, low, "a photo of sks dog", seed=3, noise_level=noise_level)

    # the same draws in the same order as the pipeline: augmentation noise, then the initial latents
    generator = torch.Generator().manual_seed(3)
    image = to_tensor(low)[None]
    augmentation = torch.randn(image.shape, generator=generator)
    latents = torch.randn(1, 4, 16, 16, generator=generator) * pipe.scheduler.init_noise_sigma
    sample, labels = upscaler_input(latents, image, augmentation, pipe.low_res_scheduler, noise_level)

    assert sample.shape == (1, 7, 16, 16) == seen["sample"].shape
    torch.testing.assert_close(sample, seen["sample"], rtol=0, atol=1e-6)
    assert labels.tolist() == seen["class_labels"].tolist() == [noise_level]
    # and the text conditioning is stage (a)'s SD encoding of the caption
    family = family_of(pipe)
    ids = family.tokenize(family.tokenizers(pipe), ["a photo of sks dog"])
    with torch.no_grad():
        cond = family.encode(list(family.text_encoders(pipe).values()), ids)
    torch.testing.assert_close(cond.embeds, seen["hidden"], rtol=0, atol=1e-6)


def test_augmentation_is_the_low_res_schedule_at_the_noise_level():
    pipe = tiny_upscaler_pipeline()
    image, noise, noisy = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8), torch.randn(2, 4, 8, 8)
    sample, labels = upscaler_input(noisy, image, noise, pipe.low_res_scheduler, 10)
    a = pipe.low_res_scheduler.alphas_cumprod[10]
    torch.testing.assert_close(sample[:, :4], noisy)
    torch.testing.assert_close(sample[:, 4:], a.sqrt() * image + (1 - a).sqrt() * noise)
    assert labels.tolist() == [10, 10]


def test_condition_draws_fresh_noise_per_call_and_labels_every_row():
    pipe = tiny_upscaler_pipeline()
    condition = LowResCondition(pipe.low_res_scheduler, 20, 4)
    image, noisy = torch.zeros(3, 3, 8, 8), torch.zeros(3, 4, 8, 8)
    torch.manual_seed(0)
    sample, extra = condition.apply(noisy, image)
    torch.manual_seed(0)
    expected, _ = upscaler_input(noisy, image, torch.randn(3, 3, 8, 8), pipe.low_res_scheduler, 20)
    torch.testing.assert_close(sample, expected)
    assert extra["class_labels"].tolist() == [20, 20, 20]
    assert not torch.equal(condition.apply(noisy, image)[0], sample)  # the augmentation is random per step


def _manifest(**upscaler):
    from dbooth.workspace.config import apply_overrides
    from dbooth.workspace.schema import Manifest

    return apply_overrides(Manifest(class_noun="dog"), {f"upscaler.{k}": v for k, v in upscaler.items()})


def test_low_res_condition_reads_the_pipeline_and_checks_settings():
    pipe = tiny_upscaler_pipeline()
    manifest = _manifest(noise_level=30)
    manifest.train.resolution = 64
    condition = SD_X4_UPSCALER.low_res_condition(pipe, manifest)
    assert (condition.noise_level, condition.factor, condition.side_step) == (30, 4, 16)
    assert SD1.low_res_condition(tiny_pipeline(), manifest) is None
    manifest.train.resolution = 72
    with pytest.raises(DboothError, match="multiple of 16"):
        SD_X4_UPSCALER.low_res_condition(pipe, manifest)
    manifest = _manifest(noise_level=351)
    manifest.train.resolution = 64
    with pytest.raises(DboothError, match="0 to 350"):
        SD_X4_UPSCALER.low_res_condition(pipe, manifest)


def test_pair_side_never_enlarges_class_images(tmp_path):
    condition = LowResCondition(None, 10, 4)
    paths = []
    for i, size in enumerate((40, 96)):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (size, size + 5)).save(paths[-1])
    assert condition.pair_side(paths[1:], 64) == 64
    assert condition.pair_side(paths, 64) == 32  # 40 px: the largest multiple of 16 below
    Image.new("RGB", (12, 12)).save(tmp_path / "tiny.png")
    with pytest.raises(DboothError, match="too small"):
        condition.pair_side([tmp_path / "tiny.png"], 64)


def test_latent_bank_pairs_each_crop_with_its_shrunk_view(tmp_path):
    from dbooth.training.data import LatentBank

    pipe = tiny_upscaler_pipeline()
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((torch.rand(80, 96, 3) * 255).to(torch.uint8).numpy()).save(paths[-1])
    for cache in (True, False):
        bank = LatentBank(paths, pipe.vae, resolution=64, crop="center", flip=False, cache=cache, seed=0,
                          device=torch.device("cpu"), dtype=torch.float32, low_res_factor=4)
        drawn = bank.draw(torch.tensor([1, 0]))
        assert drawn.latents.shape == (2, 4, 16, 16) and drawn.low_res.shape == (2, 3, 16, 16)
        for row, index in enumerate((1, 0)):
            view = resize_and_crop(Image.open(paths[index]).convert("RGB"), 64, rng=random.Random(0))
            torch.testing.assert_close(drawn.low_res[row], to_tensor(shrink(view, 4)))
        assert len(bank.sample(torch.tensor([0]))) == 3  # the text-to-image view of the same bank
    plain = LatentBank(paths, pipe.vae, resolution=64, crop="center", flip=False, cache=True, seed=0,
                       device=torch.device("cpu"), dtype=torch.float32)
    assert plain.draw(torch.tensor([0])).low_res is None
