"""Fixtures for the export tests: private copies of fake runs, LoRAs on SD 2.x- and SDXL-shaped models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from export_fakes import FakeRun, FamilyLora, make_family_lora, make_full_run, make_lora_run
from dbooth.families.tiny import tiny_sd2_pipeline, tiny_sdxl_pipeline


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core box they lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lora_run_src(tmp_path_factory) -> FakeRun:
    return make_lora_run(tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="session")
def full_run_src(tmp_path_factory) -> FakeRun:
    return make_full_run(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="session")
def sd2_lora(tmp_path_factory) -> FamilyLora:
    return make_family_lora(tmp_path_factory.mktemp("sd2-lora"), tiny_sd2_pipeline)


@pytest.fixture(scope="session")
def sdxl_lora(tmp_path_factory) -> FamilyLora:
    """LoRAs on the UNet's attention and on both text encoders, as dbooth trains them."""
    return make_family_lora(tmp_path_factory.mktemp("sdxl-lora"), tiny_sdxl_pipeline)


def _copy(src: FakeRun, tmp_path: Path) -> FakeRun:
    run_dir = tmp_path / "runs" / src.run_dir.name
    shutil.copytree(src.run_dir, run_dir)
    return FakeRun(run_dir, src.base_dir, src.reference)


@pytest.fixture
def lora_run(lora_run_src, tmp_path) -> FakeRun:
    """A private copy per test, so outputs written into the run folder never meet."""
    return _copy(lora_run_src, tmp_path)


@pytest.fixture
def full_run(full_run_src, tmp_path) -> FakeRun:
    return _copy(full_run_src, tmp_path)
