"""The training options that change what a run is, as recorded in ``run.json`` and said back.

Torch-free: ``dbooth status`` and exports read them from ``run.json`` without loading a model. Only the
options that change the weights a run produces are recorded; speed and memory settings are not.
"""

from __future__ import annotations


def run_options(train, *, masked: bool = False) -> dict:
    """What ``run.json`` records under "options", from a ``TrainConfig``; ``masked``: masks were found and used."""
    lora = train.lora
    ema = train.ema
    return {
        "optimizer": train.optimizer,
        "dora": train.method == "lora" and lora.use_dora,
        "rslora": train.method == "lora" and lora.use_rslora,
        "ema": {"decay": ema.decay, "every": ema.every, "output": ema.use_for_output} if ema.enabled else None,
        "snr_gamma": train.snr_gamma,
        "noise_offset": train.noise_offset,
        "min_timestep": train.min_timestep,
        "max_timestep": train.max_timestep,
        "input_perturbation": train.input_perturbation,
        "masked_loss": masked,
        "buckets": train.buckets,
    }


def describe_options(options: dict | None) -> list[str]:
    """Short phrases for the options that differ from plain DreamBooth, e.g. ["DoRA", "Min-SNR 5"].

    An old run.json without "options" describes as nothing rather than guessing."""
    if not options:
        return []
    said = []
    if options.get("dora"):
        said.append("DoRA")
    if options.get("rslora"):
        said.append("rsLoRA")
    optimizer = options.get("optimizer")
    if optimizer and optimizer != "adamw":
        said.append(optimizer)
    ema = options.get("ema")
    if ema:
        said.append(f"EMA {ema.get('decay'):g}" + (" (output is the EMA)" if ema.get("output") else ""))
    if options.get("snr_gamma") is not None:
        said.append(f"Min-SNR {options['snr_gamma']:g}")
    if options.get("noise_offset"):
        said.append(f"offset noise {options['noise_offset']:g}")
    low, high = options.get("min_timestep") or 0, options.get("max_timestep")
    if low or high is not None:
        said.append(f"timesteps {low}-{'end' if high is None else high}")
    if options.get("input_perturbation"):
        said.append(f"input perturbation {options['input_perturbation']:g}")
    if options.get("masked_loss"):
        said.append("masked loss")
    if options.get("buckets"):
        said.append("aspect buckets")
    flow = options.get("flow")
    if flow:
        said.append(f"flow matching ({flow.get('timestep_sampling')}"
                    + (f", {flow['weighting']} weighting" if flow.get("weighting") not in (None, "none") else "")
                    + (f", guidance {flow['guidance']:g}" if flow.get("guidance") is not None else "") + ")")
    return said
