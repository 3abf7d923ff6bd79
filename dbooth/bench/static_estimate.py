"""``dbooth bench --static``: the memory a configuration's training needs, from the models' configs alone.

The published-shape models (``sd15``, ``sdxl``, ``sd35m``, ``sd35l``, ``flux``) are built on the meta device, so
nothing is downloaded, built, loaded or run and any machine can print the figures; the small ``tiny`` and ``shapes``
models, and a workspace's own base model, are read from their folders. Figures are for the accelerator's layout
(``flops.static_memory_of``); ``host set-up`` is what setting the run up holds in host memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dbooth.bench.configs import BENCH_FIXED, CONFIGS, BenchConfig, get_config

META_MODELS = ("sd15", "sdxl", "sd35m", "sd35l", "flux")
GIB = 1 / 1024  # MB -> GiB

# (column title, key of the estimate), in GiB; "-" where a family has no such figure (the UNets' activations)
COLUMNS = [("weights", "weights_mb"), ("train", "training_state_mb"), ("static", "total_mb"),
           ("act", "activations_plain_mb"), ("ckpt", "activations_checkpointed_mb"), ("peak", "peak_estimate_mb"),
           ("text", "text_encoders_mb"), ("host", "host_setup_mb")]
CAPTION = ("GiB on the GPU unless said. n: images per step (with class images). weights: frozen in the weight "
           "dtype plus fp32 adapters (full: the fp32 model); train: gradients and AdamW state of what trains; static: "
           "the two; act / ckpt: a step's activations without / with gradient checkpointing (meta-device count of "
           "autograd's saves, fused SDPA); peak: static + activations as the config sets checkpointing; text: the "
           "text encoders, which leave the GPU once the captions are cached (SD 1.5 / SDXL rows count them in "
           "weights); host: host memory of setting the run up (every part in the weight dtype)")


def meta_models(model: str):
    """(denoiser, VAE, text encoders by attribute) of a published-shape bench model, on the meta device."""
    if model in ("sd35m", "sd35l", "flux"):
        from dbooth.bench.components_flow import meta_flow_models

        parts = meta_flow_models(model)
        return parts["transformer"], parts["vae"], {k: v for k, v in parts.items() if k.startswith("text_encoder")}
    if model == "sdxl":
        from dbooth.bench.components_sdxl import meta_sdxl_models

        parts = meta_sdxl_models()
        return parts["unet"], parts["vae"], {k: v for k, v in parts.items() if k.startswith("text_encoder")}
    from dbooth.bench import components

    with torch.device("meta"):
        return components.sd15_unet(), components.sd15_vae(), {"text_encoder": components.sd15_text_encoder()}


def _manifest(overrides: dict, workspace: Path | None) -> dict:
    from dbooth.workspace.config import Manifest, apply_overrides, manifest_to_dict

    if workspace is not None:
        from dbooth.workspace.folder import open_workspace

        base = open_workspace(workspace).manifest()
    else:
        base = Manifest(class_noun="dog")
    return manifest_to_dict(apply_overrides(base, overrides))


def static_row(config: BenchConfig, overrides: dict | None = None, workspace: Path | None = None,
               device_type: str = "cuda") -> dict:
    """One configuration's estimate (MB figures as ``static_memory_of`` gives them) with its settings."""
    from dbooth.bench.flops import static_memory, static_memory_of

    manifest = _manifest({**BENCH_FIXED, **config.overrides, **(overrides or {})}, workspace)
    train, prior = manifest["train"], manifest["prior"]["enabled"]
    if workspace is None and config.model in META_MODELS:
        est = static_memory_of(*meta_models(config.model), train, device_type, prior=prior)
    else:
        from dbooth.bench.measure import base_model_for

        base = manifest["base_model"] if workspace is not None else base_model_for(config.model)
        est = static_memory(base, train, device_type, prior=prior)
    est["training_state_mb"] = est["gradients_mb"] + est["optimizer_mb"]
    return {"config": config.name, "model": config.model, "method": train["method"], "resolution": train["resolution"],
            "images_per_step": train["batch_size"] * (2 if prior else 1),
            "gradient_checkpointing": train["gradient_checkpointing"], "device_type": device_type, **est}


def static_rows(config: str | None, overrides: dict | None = None, workspace: Path | None = None) -> list[dict]:
    """The named configuration's row, a workspace's, or (neither given) every published-shape configuration's."""
    if workspace is not None:
        return [static_row(BenchConfig(str(workspace), "workspace", "a workspace's own settings"), overrides,
                           workspace)]
    chosen = [get_config(config)] if config else [c for c in CONFIGS.values() if c.model in META_MODELS]
    return [static_row(c, overrides) for c in chosen]


def static_table(rows: list[dict]):
    """A rich table of the rows, in GiB."""
    from rich import box
    from rich.table import Table

    table = Table(title="static memory estimate", caption=CAPTION, box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    table.add_column("config", no_wrap=True)
    for title in ("px", "n", *[title for title, _ in COLUMNS]):
        table.add_column(title, justify="right", no_wrap=True)
    for row in rows:
        cells = [f"{row[key] * GIB:.1f}" if row.get(key) is not None else "-" for _, key in COLUMNS]
        table.add_row(row["config"], str(row["resolution"]), str(row["images_per_step"]), *cells)
    return table
