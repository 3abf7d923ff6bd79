"""The weight precisions an export can be written in."""

from __future__ import annotations

import torch

from dbooth.util.errors import DboothError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise DboothError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}") from None


def cast_floats(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Cast floating-point tensors (integer buffers stay as they are) and make them contiguous for safetensors."""
    return {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()
    }


def cast_pipeline(pipe, dtype: torch.dtype):
    """Cast the pipeline's models to ``dtype`` in place, skipping those already there (no needless warnings)."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module) and component.dtype != dtype:
            component.to(dtype=dtype)
    return pipe
