"""Export finished runs: merged pipelines, single-file checkpoints and LoRA files for other tools.

Public API (the CLI's ``merge-lora`` and ``export`` verbs call the first two):

- ``export_run(run_dir, fmt, *, base_pipeline_loader=None, out=None, dtype="fp32", force=False) -> Path``
- ``merge_run(run_dir, *, base_pipeline_loader=None, out=None, scale=1.0, dtype="fp32", force=False) -> Path``
- ``merge_lora_into_pipeline(pipe, lora_file, scale=1.0, *, default_alpha=None) -> pipe``
- ``pipeline_to_original_state_dict(pipe, layout=None)`` / ``save_single_file(pipe, path, dtype, metadata,
  layout=None)`` for the sd1, sd2 and sdxl layouts; ``detect_single_file_layout(keys)`` names a file's layout
- ``lora_to_kohya(lora, family="sd1", unet=None)`` / ``save_kohya_lora(lora, path, dtype=..., metadata=...,
  family=..., unet=...)``; ``read_lora_file(path)``
"""

from dbooth.export.dtypes import DTYPES
from dbooth.export.kohya import lora_to_kohya, save_kohya_lora
from dbooth.export.lora_file import read_lora_file, save_lora_file
from dbooth.export.merge import merge_lora_into_pipeline
from dbooth.export.run_export import FORMATS, export_run, merge_run, trained_pipeline
from dbooth.export.single_file import detect_single_file_layout, pipeline_to_original_state_dict, save_single_file

__all__ = [
    "DTYPES",
    "detect_single_file_layout",
    "FORMATS",
    "export_run",
    "lora_to_kohya",
    "merge_lora_into_pipeline",
    "merge_run",
    "pipeline_to_original_state_dict",
    "read_lora_file",
    "save_kohya_lora",
    "save_lora_file",
    "save_single_file",
    "trained_pipeline",
]
