"""Shared fixtures: a tiny base model saved once per session, and workspace factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from drawn import draw_photos

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# tiny models gain nothing from a second thread, and on a busy machine two threads spin-wait
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402  (after OMP_NUM_THREADS)

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random StableDiffusionPipeline folder (32 px images, 16 px latents)."""
    from dbooth.families.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sd2_base(tmp_path_factory) -> Path:
    """A tiny random SD 2.x-shaped (v-prediction, OpenCLIP-style encoder) pipeline folder."""
    from dbooth.families.tiny import tiny_sd2_pipeline

    path = tmp_path_factory.mktemp("models") / "tiny-sd2"
    tiny_sd2_pipeline().save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_sdxl_base(tmp_path_factory) -> Path:
    """A tiny random SDXL-shaped (two text encoders, text_time conditioning) pipeline folder."""
    from dbooth.families.tiny import tiny_sdxl_pipeline

    path = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    tiny_sdxl_pipeline().save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_upscaler_base(tmp_path_factory) -> Path:
    """A tiny random StableDiffusionUpscalePipeline folder (16 px in, 64 px out)."""
    from dbooth.families.tiny import save_tiny_upscaler

    return save_tiny_upscaler(tmp_path_factory.mktemp("models") / "tiny-x4")


@pytest.fixture
def photos(tmp_path) -> Path:
    return draw_photos(tmp_path / "photos")


@pytest.fixture
def make_workspace(tmp_path, tiny_base, photos):
    """Create a workspace on the tiny base model with small, fast settings."""
    from dbooth import api
    from dbooth.workspace.config import apply_overrides, write_manifest

    def make(name: str = "corgi", **overrides):
        ws = api.init(tmp_path / name, "dog", base_model=str(tiny_base), images=photos)
        settings = {
            "prior.num_class_images": 4,
            "prior.steps": 2,
            "prior.batch_size": 4,
            "train.max_steps": 4,
            "train.checkpoint_every": 0,
            "train.validation_every": 0,
            "sample.steps": 2,
            "sample.num_images": 2,
        }
        settings.update(overrides)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), settings))
        return ws

    return make


@pytest.fixture
def dreambench() -> Path:
    path = SHARED / "dreambench" / "images"
    if not path.is_dir():
        pytest.skip("../shared/dreambench is not present")
    return path
