"""The committed builtin:shapes-x4 upscaler: loads in diffusers, takes 64 px images to 256 px."""

import numpy as np
import pytest
import torch
from PIL import Image

from dbooth_shapes import BUILTIN_MODELS, builtin_model_path
from dbooth_shapes.world import caption, random_scene, render

pytestmark = pytest.mark.quality


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionUpscalePipeline

    p = StableDiffusionUpscalePipeline.from_pretrained(builtin_model_path("builtin:shapes-x4"))
    p.set_progress_bar_config(disable=True)
    return p


def test_registered_beside_builtin_shapes_and_resolved_as_a_base_model():
    from dbooth.families.source import resolve_model

    assert builtin_model_path("shapes-x4") == BUILTIN_MODELS["builtin:shapes-x4"]
    source = resolve_model("builtin:shapes-x4")
    assert source.kind == "builtin" and source.location == str(BUILTIN_MODELS["builtin:shapes-x4"])


def test_committed_folder_is_small_safetensors_only():
    root = builtin_model_path("builtin:shapes-x4")
    files = [p for p in root.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 16 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt")]
    assert (root / "README.md").is_file() and (root / "low_res_scheduler" / "scheduler_config.json").is_file()


def test_pipeline_is_conditioned_like_the_x4_upscaler(pipe):
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels + 3
    assert pipe.vae.config.scaling_factor == 0.08333
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.config.max_noise_level == 350
    assert pipe.tokenizer.tokenize("sks") == ["sks</w>"]  # builtin:shapes' vocabulary, identifiers included


def _psnr_at_64px(high: Image.Image, low: Image.Image) -> float:
    back = np.asarray(high.resize((64, 64), Image.BOX), np.float32) / 255
    return float(10 * np.log10(1 / ((back - np.asarray(low, np.float32) / 255) ** 2).mean()))


def test_a_call_takes_64px_to_256px_and_keeps_the_low_resolution_content(pipe):
    scenes = [random_scene(s) for s in (21, 22)]
    lows = [render(s, 64) for s in scenes]
    out = pipe([caption(s) for s in scenes], image=lows, num_inference_steps=4, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(0)).images
    assert [im.size for im in out] == [(256, 256)] * 2
    for high, low, other in zip(out, lows, lows[::-1]):
        own = _psnr_at_64px(high, low)
        assert own > 17, "the 256 px image must downscale to its 64 px input"
        assert own > _psnr_at_64px(high, other) + 5  # its own input, not just any scene
