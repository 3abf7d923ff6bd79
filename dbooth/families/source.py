"""Where a base model lives: a hub id, a local diffusers folder, a single checkpoint file, or a name a plugin
registered (``builtin:shapes``, see ``dbooth.plugins``).

Model-free (no torch, no diffusers), so a wrong path is reported at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbooth.util.errors import DboothError

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")  # torch.save files: unpickling one can run any code
SINGLE_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


@dataclass(frozen=True)
class ModelSource:
    kind: str  # builtin | folder | single_file | hub
    location: str
    spec: str


def resolve_model(spec: str, *, allow_pickle: bool = False) -> ModelSource:
    """Where ``spec`` lives; a pickle-based single file is refused unless ``allow_pickle``."""
    spec = spec.strip()
    if not spec:
        raise DboothError("base model: empty; set base_model in dbooth.yaml or pass --base")
    from dbooth.plugins import named_model

    named = named_model(spec)
    if named is not None:  # registered by a plugin, e.g. builtin:shapes
        return ModelSource("builtin", str(named.path()), spec)
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise DboothError(
                f"base model {spec}: folder has no model_index.json; "
                "pass a diffusers pipeline folder, a .safetensors checkpoint, or a hub id"
            )
        return ModelSource("folder", str(path), spec)
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise DboothError(f"base model {spec}: file does not exist; check the path")
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise DboothError(
                f"base model {spec}: a {path.suffix} file is a Python pickle, which can run any code when loaded; "
                "convert it to .safetensors, or pass --allow-pickle (allow_pickle: true) if you trust its source"
            )
        return ModelSource("single_file", str(path), spec)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DboothError(f"base model {spec}: no such folder or file; check the path")
    return ModelSource("hub", spec, spec)


def hub_unreachable(repo_id: str) -> DboothError:
    """The one error for a hub id that is neither in the local Hugging Face cache nor downloadable."""
    return DboothError(
        f"base model {repo_id} cannot be reached: it is not in the local Hugging Face cache "
        "and the hub is unreachable (offline?); download it once while online "
        f"(huggingface-cli download {repo_id}) or set base_model in dbooth.yaml to a local folder or .safetensors "
        "file (`dbooth init --base` for a new workspace)"
    )
