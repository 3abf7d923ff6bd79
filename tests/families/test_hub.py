"""A hub id already in the Hugging Face cache works offline, with its family and resolution read from the cache."""

from __future__ import annotations

import shutil

import huggingface_hub.constants

from dbooth import api
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.families import SDXL, detect_family
from dbooth.families.source import resolve_model

REPO = "some-org/tiny-sdxl"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache_with(tmp_path, model_dir):
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/REVISION/...}."""
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return cache


def test_a_cached_sdxl_hub_id_trains_offline(tmp_path, tiny_sdxl_base, photos, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_cache_with(tmp_path, tiny_sdxl_base)))
    assert detect_family(resolve_model(REPO)) is SDXL
    ws = api.init(tmp_path / "ws", "dog", base_model=REPO, images=photos)
    assert ws.manifest().base_model == REPO and ws.manifest().train.resolution == 32  # from the cached configs
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {
        "prior.enabled": False, "train.max_steps": 2, "train.checkpoint_every": 0, "train.validation_every": 0,
        "train.method": "lora"}))
    run = api.train(ws).run
    assert run.info()["family"] == "sdxl" and run.lora_file.is_file()


def test_an_uncached_hub_id_keeps_the_default_resolution(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ws = api.init(tmp_path / "ws", "dog", base_model="some-org/not-downloaded")
    assert ws.manifest().train.resolution == 512


def test_a_cached_flux_hub_id_is_read_offline_with_its_card_settings(tmp_path, monkeypatch):
    from dbooth.families import FLUX
    from dbooth.families.tiny_flow import save_tiny_flow_pipeline

    base = save_tiny_flow_pipeline(tmp_path / "schnell", "flux-schnell")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_cache_with(tmp_path, base)))
    assert detect_family(resolve_model(REPO)) is FLUX
    manifest = api.init(tmp_path / "ws", "dog", base_model=REPO).manifest()
    assert (manifest.train.resolution, manifest.sample.scheduler, manifest.sample.steps) == (32, "euler", 4)
    assert manifest.sample.guidance_scale == 0.0 and manifest.prior.steps == 4  # schnell: no guidance input
