"""The paper's two stages: (a) the text-to-image model, (b) the super-resolution model (``upscaler:``).

Stage (b) runs the same training loop on a manifest derived from the workspace's: the upscaler as the
base model and the ``upscaler`` section's settings in place of ``train``'s. Model-free: no torch here.
"""

from __future__ import annotations

from dataclasses import replace

from dbooth.util.errors import DboothError
from dbooth.workspace.schema import Manifest

STAGES = ("base", "upscaler")  # run.json "stage"; runs without one are stage (a)

# `dbooth train` options that mean the upscaler's own settings under --upscaler
UPSCALER_KEYS = {
    "train.method": "upscaler.method",
    "train.max_steps": "upscaler.max_steps",
    "train.learning_rate": "upscaler.learning_rate",
    "prior.enabled": "upscaler.prior",
}
FROZEN_IN_UPSCALER = {"train.train_text_encoder": "--train-text-encoder", "train.buckets": "--buckets"}


def upscaler_overrides(overrides: dict) -> dict:
    """``train`` command-line overrides as they apply to stage (b)."""
    for key, flag in FROZEN_IN_UPSCALER.items():
        if overrides.get(key):
            raise DboothError(f"train --upscaler: {flag} does not apply to the upscaler (its text encoder stays "
                              "frozen and its crops square); drop it")
    return {UPSCALER_KEYS.get(k, k): v for k, v in overrides.items()}


def upscaler_manifest(m: Manifest) -> Manifest:
    """The manifest stage (b) trains with: the upscaler as base model, ``upscaler``'s steps, method,
    learning rate, resolution, checkpoints, validation and prior switch; everything else from ``train``
    (except ``stop_when``: stage (b) is not scored)."""
    up = m.upscaler
    train = replace(m.train, method=up.method, max_steps=up.max_steps, learning_rate=up.learning_rate,
                    resolution=up.resolution or upscaler_resolution(up.base, allow_pickle=m.allow_pickle),
                    checkpoint_every=up.checkpoint_every, validation_every=up.validation_every,
                    buckets=False, train_text_encoder=False,
                    stop_when=replace(m.train.stop_when, enabled=False))  # its judges score stage (a)'s images
    return replace(m, base_model=up.base, train=train, prior=replace(m.prior, enabled=up.prior))


def upscaler_resolution(spec: str, *, allow_pickle: bool = False) -> int:
    """An upscaler's own output side (UNet sample size x VAE factor), from its configs; the released x4
    upscaler's 512 when they cannot be read without a download."""
    from dbooth.families import SD_X4_UPSCALER, native_resolution
    from dbooth.families.source import resolve_model

    return native_resolution(resolve_model(spec, allow_pickle=allow_pickle)) or SD_X4_UPSCALER.default_resolution


def check_stage(family, stage: str, spec: str) -> None:
    """A text-to-image model serves stage (a) and an upscaler stage (b), never the other way round."""
    if family.stage == stage:
        return
    if family.stage == "upscaler":
        raise DboothError(f"base model {spec} is an upscaler ({family.title}); set it as upscaler.base in "
                          "dbooth.yaml and train it with `dbooth train --upscaler`")
    raise DboothError(f"upscaler.base {spec} is a {family.title} text-to-image model, not an upscaler; "
                      "set upscaler.base to a StableDiffusionUpscalePipeline (hub id, folder or builtin:shapes-x4)")
