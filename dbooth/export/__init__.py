"""Export finished runs: merged pipelines, single-file checkpoints and LoRA files for other tools.

Public API (the CLI's ``merge-lora`` and ``export`` verbs call the first two):

- ``export_run(run_dir, fmt, *, checkpoint=None, base_pipeline_loader=None, out=None, dtype="fp32", force=False)
  -> Path`` (``checkpoint``: a folder in ``run_dir/checkpoints``, exported instead of the final weights)
- ``merge_run(run_dir, *, checkpoint=None, base_pipeline_loader=None, out=None, scale=1.0, dtype="fp32",
  force=False) -> Path``
- ``merge_lora_into_pipeline(pipe, lora_file, scale=1.0, *, default_alpha=None) -> pipe``
- ``pipeline_to_original_state_dict(pipe, layout=None)`` / ``save_single_file(pipe, path, dtype, metadata,
  layout=None)`` for the sd1, sd2 and sdxl layouts; ``detect_single_file_layout(keys)`` names a file's layout
- ``lora_to_kohya(lora, family="sd1", unet=None)`` / ``save_kohya_lora(lora, path, dtype=..., metadata=...,
  family=..., unet=...)``; ``read_lora_file(path)``
- ``FORMATS`` and ``dbooth.export.clients``: which format each client takes, and how to load it there.

Everything but ``FORMATS`` is imported on first use (PEP 562), so the CLI can read
``dbooth.export.clients`` for its help text without importing torch and diffusers.
"""

from importlib import import_module

from dbooth.export.clients import FORMATS

_LAZY = {
    "DTYPES": "dtypes",
    "lora_to_kohya": "kohya",
    "save_kohya_lora": "kohya",
    "read_lora_file": "lora_file",
    "save_lora_file": "lora_file",
    "merge_lora_into_pipeline": "merge",
    "export_run": "run_export",
    "merge_run": "run_export",
    "trained_pipeline": "run_export",
    "pipeline_to_original_state_dict": "single_file",
    "save_single_file": "single_file",
    "detect_single_file_layout": "single_file",
}

__all__ = [  # spelled out for static tools; the same names as _LAZY, plus FORMATS
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


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
