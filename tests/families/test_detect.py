"""The family is read off the model itself: model_index.json and configs for folders, key names for files."""

from __future__ import annotations

import json

import pytest

from dbooth.util.errors import DboothError
from dbooth.export import save_single_file
from dbooth.families import SD1, SD2, SDXL, detect_family, family_of, native_resolution
from dbooth.families.source import resolve_model
from dbooth.families.tiny import tiny_pipeline, tiny_sd2_pipeline, tiny_sdxl_pipeline


def test_folders(tiny_base, tiny_sd2_base, tiny_sdxl_base):
    assert detect_family(resolve_model(str(tiny_base))) is SD1
    assert detect_family(resolve_model(str(tiny_sd2_base))) is SD2
    assert detect_family(resolve_model(str(tiny_sdxl_base))) is SDXL
    assert detect_family(resolve_model("builtin:shapes")) is SD1


@pytest.mark.parametrize("build,family", [(tiny_pipeline, SD1), (tiny_sd2_pipeline, SD2), (tiny_sdxl_pipeline, SDXL)])
def test_single_files_and_loaded_pipelines(tmp_path, build, family):
    pipe = build()
    assert family_of(pipe) is family
    path = save_single_file(pipe, tmp_path / "model.safetensors")
    source = resolve_model(str(path))
    assert detect_family(source) is family
    assert native_resolution(source) == family.default_resolution


def test_native_resolution_comes_from_the_configs(tiny_sdxl_base):
    assert native_resolution(resolve_model(str(tiny_sdxl_base))) == 32  # 16 px latents, VAE x2


def test_other_pipelines_are_refused_by_name(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(DboothError, match="WanPipeline"):
        detect_family(resolve_model(str(tmp_path)))


def test_a_damaged_model_index_is_a_one_line_error(tmp_path):
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(DboothError, match="model_index.json: cannot be read as JSON"):
        detect_family(resolve_model(str(tmp_path)))


def test_the_sdxl_refiner_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline"}))
    with pytest.raises(DboothError, match="not refiners"):
        detect_family(resolve_model(str(tmp_path)))
