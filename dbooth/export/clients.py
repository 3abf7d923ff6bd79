"""Which export format each client (diffusers, ComfyUI, AUTOMATIC1111, ...) takes, and how to load it there.

One table, ``EXPORT_FORMATS``, feeds ``dbooth export --help``, the lines ``export`` prints after
writing, every model card and metadata block, and README's table (a test keeps README in step).
Pure data and string formatting: the CLI imports this at startup, so no torch or diffusers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

CLIENTS = ("diffusers", "ComfyUI", "AUTOMATIC1111/Forge", "kohya sd-scripts", "InvokeAI")
UPSCALER_PIPELINE = "StableDiffusionUpscalePipeline"  # stage (b) runs: loaded by their own rows below
FLOW_PIPELINES = ("StableDiffusion3Pipeline", "FluxPipeline")  # SD 3.5 and FLUX.1: their own rows below
LM_PIPELINES = ("Flux2KleinPipeline", "ZImagePipeline")  # FLUX.2 [klein] and Z-Image: diffusers layouts only
# ComfyUI maps a diffusers LoRA's "transformer." keys for both: comfy/lora.py model_lora_keys_unet, its Flux branch
# (model_base.Flux2 is a Flux; comfy/utils.py flux_to_diffusers names FLUX.2's fused single-block projections) and
# its Lumina2 branch (Z-Image; comfy/utils.py z_image_to_diffusers), read in Comfy-Org/ComfyUI's source
_LM_LORA_NOTE = ("ComfyUI maps this file's diffusers key names for this family; dbooth writes no kohya-layout "
                 "LoRA for it (no --format lora-kohya)")


@dataclass(frozen=True)
class ExportFormat:
    """One ``--format``: what it writes and, per client that reads it, how to load it.

    ``loads_in`` values are Markdown (code in backticks) with ``{path}`` (the exported file or folder)
    and ``{name}`` (its stem, which AUTOMATIC1111 uses as the LoRA's name) left to fill in.
    """

    name: str
    title: str
    lora: bool  # a LoRA file (LoRA runs only) rather than a whole model (any run; LoRA runs are merged)
    folder: bool
    loads_in: dict[str, str] = field(default_factory=dict)
    note: str = ""  # what a user would otherwise get wrong, said wherever the loading lines are
    # how clients load an upscaler run (StableDiffusionUpscalePipeline) in this format; empty = none does,
    # so dbooth does not write it (ComfyUI reads the x4 upscaler only in a layout dbooth does not write)
    upscaler_loads_in: dict[str, str] = field(default_factory=dict)
    # other families' clients, by pipeline class, where they differ from the SD rows (empty = none: not written)
    family_loads_in: dict[str, dict[str, str]] = field(default_factory=dict)
    family_notes: dict[str, str] = field(default_factory=dict)  # by pipeline class, instead of ``note``


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "diffusers",
            "diffusers pipeline folder",
            lora=False,
            folder=True,
            loads_in={
                "diffusers": '`DiffusionPipeline.from_pretrained("{path}")`',
                "InvokeAI": "import `{path}` in the Model Manager",
            },
            upscaler_loads_in={"diffusers": '`StableDiffusionUpscalePipeline.from_pretrained("{path}")`'},
            family_loads_in={p: {"diffusers": '`DiffusionPipeline.from_pretrained("{path}")`'}
                             for p in FLOW_PIPELINES + LM_PIPELINES},
        ),
        ExportFormat(
            "single-file",
            "single-file Stable Diffusion checkpoint (original key layout)",
            lora=False,
            folder=False,
            loads_in={
                "diffusers": '`{pipeline}.from_single_file("{path}")`',
                "ComfyUI": "copy to `ComfyUI/models/checkpoints/`, pick it in Load Checkpoint",
                "AUTOMATIC1111/Forge": "copy to `stable-diffusion-webui/models/Stable-diffusion/`",
                "kohya sd-scripts": "`--pretrained_model_name_or_path {path}`",
                "InvokeAI": "import `{path}` in the Model Manager",
            },
            family_loads_in={p: {
                "diffusers": f'`{p.replace("Pipeline", "").replace("StableDiffusion3", "SD3")}Transformer2DModel'
                             '.from_single_file("{path}")`, then `transformer=` to the base pipeline',
                "ComfyUI": "copy to `ComfyUI/models/diffusion_models/`, pick it in Load Diffusion Model",
            } for p in FLOW_PIPELINES} | {p: {} for p in LM_PIPELINES},  # no original layout written for these
            family_notes={p: "the transformer alone, in its original layout: the text encoders and VAE are the "
                             "base model's" for p in FLOW_PIPELINES},
        ),
        ExportFormat(
            "lora",
            "LoRA weights, diffusers format",
            lora=True,
            folder=False,
            loads_in={"diffusers": '`pipe.load_lora_weights("{path}")`'},
            upscaler_loads_in={"diffusers": '`pipe.load_lora_weights("{path}")` on the StableDiffusionUpscalePipeline'},
            note="ComfyUI and AUTOMATIC1111/Forge do not load this file (none of its keys map, and they say "
            "nothing): export with `dbooth export --format lora-kohya` for them",
            family_loads_in={p: {"diffusers": '`pipe.load_lora_weights("{path}")`',
                                 "ComfyUI": "copy to `ComfyUI/models/loras/`, apply it with a Load LoRA node"}
                             for p in FLOW_PIPELINES + LM_PIPELINES},
            family_notes={"FluxPipeline": "Forge and kohya sd-scripts read FLUX LoRAs in BFL's layout: "
                                          "export with `dbooth export --format lora-kohya` for them; ComfyUI "
                                          "ignores a DoRA run's magnitudes: use `--format single-file` there",
                          "StableDiffusion3Pipeline": "ComfyUI ignores a DoRA run's magnitudes: use `--format "
                                                      "single-file` there",
                          **{p: _LM_LORA_NOTE for p in LM_PIPELINES}},
        ),
        ExportFormat(
            "lora-kohya",
            "LoRA weights, kohya / AUTOMATIC1111 format",
            lora=True,
            folder=False,
            loads_in={
                "diffusers": '`pipe.load_lora_weights("{path}")`',
                "ComfyUI": "copy to `ComfyUI/models/loras/`, apply it with a Load LoRA node",
                "AUTOMATIC1111/Forge": "copy to `stable-diffusion-webui/models/Lora/`, prompt with `<lora:{name}:1>`",
                "kohya sd-scripts": "`--network_weights {path}`",
                "InvokeAI": "import `{path}` in the Model Manager",
            },
            family_loads_in={
                "FluxPipeline": {
                    "diffusers": '`pipe.load_lora_weights("{path}")`',
                    "ComfyUI": "copy to `ComfyUI/models/loras/`, apply it with a Load LoRA node",
                    "AUTOMATIC1111/Forge": "copy to `models/Lora/` of Forge (AUTOMATIC1111 has no FLUX)",
                    "kohya sd-scripts": "`--network_weights {path}`",
                },
                "StableDiffusion3Pipeline": {},  # SD 3.5's clients read the diffusers layout: --format lora
                **{p: {} for p in LM_PIPELINES},  # so do klein's and Z-Image's (ComfyUI): --format lora
            },
        ),
    )
}

FORMATS = tuple(EXPORT_FORMATS)
LORA_FORMATS = tuple(f.name for f in EXPORT_FORMATS.values() if f.lora)
FOLDER_FORMATS = tuple(f.name for f in EXPORT_FORMATS.values() if f.folder)


def _loads_in(fmt: str, pipeline: str) -> dict[str, str]:
    spec = EXPORT_FORMATS[fmt]
    if pipeline in spec.family_loads_in:
        return spec.family_loads_in[pipeline]
    return spec.upscaler_loads_in if pipeline == UPSCALER_PIPELINE else spec.loads_in


def clients_of(fmt: str, pipeline: str = "StableDiffusionPipeline") -> tuple[str, ...]:
    """The clients that load ``fmt`` for a run of ``pipeline``'s family, in ``CLIENTS`` order."""
    return tuple(c for c in CLIENTS if c in _loads_in(fmt, pipeline))


def load_lines(fmt: str, path: str | PurePath, *, markdown: bool = False,
               pipeline: str = "StableDiffusionPipeline") -> list[str]:
    """``client: how to load it`` per client of ``fmt`` for the file or folder at ``path``, then its note.

    Plain text by default (for the terminal); ``markdown=True`` keeps the backticks. ``pipeline`` is the
    run's diffusers pipeline class (its model family's: ``StableDiffusionXLPipeline`` for SDXL).
    """
    spec = EXPORT_FORMATS[fmt]
    name = PurePath(path).name if spec.folder else PurePath(path).stem
    ways = _loads_in(fmt, pipeline)

    def text(template: str) -> str:  # backticks go before filling in, so a path keeps any of its own
        return (template if markdown else template.replace("`", "")).format(path=path, name=name, pipeline=pipeline)

    lines = [f"{c}: {text(ways[c])}" for c in clients_of(fmt, pipeline)]
    note = spec.family_notes.get(pipeline, spec.note if pipeline != UPSCALER_PIPELINE else "")
    return lines + ([f"note: {text(note)}"] if note else [])


def formats_for(client: str, *, lora: bool) -> tuple[str, ...]:
    """The formats ``client`` loads, for a full model (``lora=False``) or a LoRA file."""
    return tuple(f.name for f in EXPORT_FORMATS.values() if f.lora == lora and client in f.loads_in)


def clients_table() -> str:
    """README's "Which file for which client" table, as Markdown."""
    rows = ["| client | full run | LoRA run | how to load it |", "|---|---|---|---|"]
    for client in CLIENTS:
        full, lora = (" or ".join(f"`{f}`" for f in formats_for(client, lora=x)) for x in (False, True))
        ways: dict[str, list[str]] = {}  # one entry per way of loading, naming every format loaded that way
        for f in (*formats_for(client, lora=False), *formats_for(client, lora=True)):
            ways.setdefault(EXPORT_FORMATS[f].loads_in[client].format(path="PATH", name="NAME", pipeline="StableDiffusionPipeline"), []).append(f"`{f}`")
        how = "; ".join(f"{', '.join(fmts)}: {way}" for way, fmts in ways.items())
        rows.append(f"| {client} | {full or '-'} | {lora or '-'} | {how} |")
    return "\n".join(rows) + "\n"


def clients_text() -> str:
    """The same choice as a plain-text table for ``dbooth export --help``."""
    rows = [("client", "full run", "LoRA run")]
    for client in CLIENTS:
        full, lora = (", ".join(formats_for(client, lora=x)) or "-" for x in (False, True))
        rows.append((client, full, lora))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)
