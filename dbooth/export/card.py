"""Model card text and safetensors metadata, so every exported artifact says what it is, where it loads
and how to prompt it."""

from __future__ import annotations

from dbooth.export.clients import EXPORT_FORMATS, clients_of, load_lines
from dbooth.export.run_info import RunInfo


def example_prompts(run: RunInfo) -> list[str]:
    token = f"{run.identifier} {run.class_noun}"
    return [run.instance_prompt, f"a {token} on the beach", f"a painting of {token} in the snow"]


def _pipeline(run: RunInfo) -> str:
    from dbooth.families import get_family

    return get_family(run.family).pipeline_class_name


def card_metadata(run: RunInfo, fmt: str, dtype: str, *, name: str = "NAME") -> dict[str, str]:
    """``dbooth.*`` keys for a safetensors ``__metadata__`` (all values are strings, as the format requires)."""
    meta = {
        "dbooth.run_id": run.run_id,
        "dbooth.format": fmt,
        "dbooth.dtype": dtype,
        "dbooth.method": run.method,
        "dbooth.base_model": run.base_model,
        "dbooth.identifier": run.identifier,
        "dbooth.class_noun": run.class_noun,
        "dbooth.instance_prompt": run.instance_prompt,
        "dbooth.steps": str(run.steps),
        "dbooth.train_text_encoder": str(run.train_text_encoder).lower(),
        "dbooth.usage": usage_line(run, fmt, name=name),
        "dbooth.clients": ", ".join(clients_of(fmt, _pipeline(run))),
        "dbooth.load": "; ".join(load_lines(fmt, _file_name(fmt, name), pipeline=_pipeline(run))),
    }
    if run.checkpoint is not None:
        meta["dbooth.checkpoint"] = run.checkpoint.name
        meta["dbooth.run_steps"] = str(run.run_steps)
    if run.is_lora:
        meta["dbooth.lora_rank"] = str(run.lora_rank)
        meta["dbooth.lora_alpha"] = f"{run.lora_alpha:g}"
    if run.options:
        meta["dbooth.options"] = ", ".join(run.options)
    return meta


def usage_line(run: RunInfo, fmt: str, *, name: str = "NAME") -> str:
    """One sentence on prompting; ``name`` is the file's stem, which AUTOMATIC1111 uses as the LoRA's name."""
    token = f"{run.identifier} {run.class_noun}"
    line = f"Put '{token}' in the prompt, e.g. '{run.instance_prompt}'."
    if fmt == "lora-kohya":
        line += f" In AUTOMATIC1111 also add <lora:{name}:1> and use it on {run.base_model}."
    elif fmt == "lora":
        line += f" Load it with pipe.load_lora_weights(...) on top of {run.base_model}."
    if run.family == "sd-x4-upscaler":
        line += " It is a 4x upscaler (DreamBooth stage b): pass the small image as image=..., with its noise_level."
    return line


def _file_name(fmt: str, name: str) -> str:
    """What the exported file or folder is called, so a card's loading lines name it."""
    return name if EXPORT_FORMATS[fmt].folder else f"{name}.safetensors"


def model_card(run: RunInfo, fmt: str, dtype: str, *, merged: bool = False, name: str = "NAME") -> str:
    """A short Markdown model card (README.md for folders, a sidecar .md for files)."""
    from dbooth.families import get_family

    part = get_family(run.family).denoiser_name
    denoiser = "UNet" if part == "unet" else part  # what denoises in the run's family (SD 3.5, FLUX: transformer)
    if run.is_lora:
        parts = f"{denoiser} and text encoder" if run.train_text_encoder else f"{denoiser} only"
        how = f"LoRA (rank {run.lora_rank}, alpha {run.lora_alpha:g}, {parts})"
    else:
        how = f"full fine-tune ({denoiser}" + (" and text encoder" if run.train_text_encoder else "") + ")"
    if run.options:
        how += "; " + ", ".join(run.options)
    if merged:
        how += ", merged into the base weights"
    steps = str(run.steps)
    if run.checkpoint is not None:
        steps += f" (checkpoint {run.checkpoint.name} of a {run.run_steps}-step run)"
    prompts = "\n".join(f"- `{p}`" for p in example_prompts(run))
    loads = "\n".join(f"- {line}" for line in load_lines(fmt, _file_name(fmt, name), markdown=True,
                                                           pipeline=_pipeline(run)))
    return f"""# {run.label}: DreamBooth of "{run.identifier} {run.class_noun}"

{EXPORT_FORMATS[fmt].title}, {dtype}, exported by dbooth.

| | |
|---|---|
| base model | `{run.base_model}` |
| identifier | `{run.identifier}` |
| class noun | `{run.class_noun}` |
| method | {how} |
| training steps | {steps} |
| instance prompt | `{run.instance_prompt}` |

## Where it loads

{loads}

## How to prompt it

{usage_line(run, fmt, name=name)} Prompts without the identifier give the base model's ordinary "{run.class_noun}".

{prompts}
"""
