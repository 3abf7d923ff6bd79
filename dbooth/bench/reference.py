"""Side by side with diffusers' ``examples/dreambooth/train_dreambooth.py`` (full fine-tuning) or
``train_dreambooth_lora.py`` (LoRA) on the same workspace.

The scripts are not shipped; pass one's path (which one it is is read from its file name). Both trainers
get the same base model, images, prompts, steps, batch, resolution, precision, learning rate, prior
preservation (and for LoRA the same rank, alpha = rank as the script fixes it, and dropout), run in the
same Python environment, alternately, and are timed the same way (per-step timestamps, peak memory at
the last step, the final save not measured). dbooth is measured with its defaults (cached latents and
text embeddings) and like-for-like (both caches off, encoding every step as the script does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dbooth.util.errors import DboothError

RUNNER = Path(__file__).with_name("refrunner.py")


def script_method(script: Path) -> str:
    """What a reference script trains: ``lora`` for train_dreambooth_lora.py, ``full`` for train_dreambooth.py."""
    return "lora" if "lora" in Path(script).stem.lower() else "full"


def reference_args(ws, manifest: dict, out_dir: Path, total_steps: int, *, precompute: bool,
                   method: str = "full") -> list[str]:
    """The script's options that match a dbooth manifest (a dict) as closely as it allows."""
    from dbooth.families.source import resolve_model
    from dbooth.workspace.prompts import class_prompt, instance_prompt
    from dbooth.workspace.config import manifest_from_dict

    t, p = manifest["train"], manifest["prior"]
    if t["method"] != method:
        script, trains, config = {
            "lora": ("train_dreambooth_lora.py", "LoRA adapters", "a LoRA configuration (e.g. --config shapes-lora)"),
            "full": ("train_dreambooth.py", "the full UNet", "a full configuration (e.g. --config shapes-full)"),
        }[method]
        raise DboothError(f"bench --reference: {script} trains {trains} but this configuration's train.method is "
                          f"{t['method']}; use {config}")
    m = manifest_from_dict(manifest)
    lr = m.train.resolved_learning_rate()
    args = [
        "--pretrained_model_name_or_path", resolve_model(manifest["base_model"]).location,
        "--instance_data_dir", str(ws.instance_dir),
        "--instance_prompt", instance_prompt(m),
        "--output_dir", str(out_dir),
        "--resolution", str(t["resolution"]),
        "--train_batch_size", str(t["batch_size"]),
        "--max_train_steps", str(total_steps),
        "--learning_rate", str(lr),
        "--lr_scheduler", "constant",
        "--lr_warmup_steps", "0",
        "--mixed_precision", t["mixed_precision"],
        "--checkpointing_steps", str(10 * total_steps + 1000),
        "--seed", str(t["seed"]),
        "--max_grad_norm", str(t["max_grad_norm"]),
        "--adam_weight_decay", str(t["adam_weight_decay"]),
        "--gradient_accumulation_steps", str(t["gradient_accumulation_steps"]),
    ]
    if t["crop"] == "center":
        args.append("--center_crop")
    if p["enabled"]:
        n = len([x for x in ws.class_dir.iterdir() if x.is_file()])
        args += ["--with_prior_preservation", "--class_data_dir", str(ws.class_dir), "--class_prompt",
                 class_prompt(m), "--num_class_images", str(min(n, p["num_class_images"])),
                 "--prior_loss_weight", str(p["loss_weight"])]
    if t["gradient_checkpointing"]:
        args.append("--gradient_checkpointing")
    if t["train_text_encoder"]:
        args.append("--train_text_encoder")
    elif precompute:
        args.append("--pre_compute_text_embeddings")
    if t["optimizer"] == "adamw8bit":
        args.append("--use_8bit_adam")
    if method == "lora":
        lora = t["lora"]
        if lora["alpha"] != lora["rank"] or lora["use_dora"] or lora["use_rslora"]:
            raise DboothError("bench --reference: train_dreambooth_lora.py trains plain LoRA with alpha = rank; "
                              f"set train.lora.alpha={lora['rank']} (and DoRA/rsLoRA off) for a like-for-like run")
        args += ["--rank", str(lora["rank"]), "--lora_dropout", str(lora["dropout"])]
    return args


def measure_reference(script: Path, ws, manifest: dict, *, warmup: int, steps: int, precompute: bool,
                      python: str | None = None, env: dict | None = None, timeout_s: float | None = None) -> dict:
    """Run the script for ``warmup + steps`` optimizer steps; same result keys as a dbooth measurement."""
    script = Path(script)
    if not script.is_file():
        raise DboothError(f"bench --reference: {script} does not exist")
    total = warmup + steps
    with tempfile.TemporaryDirectory(prefix="dbooth-ref-") as tmp:
        out = Path(tmp) / "times.json"
        argv = reference_args(ws, manifest, Path(tmp) / "out", total, precompute=precompute,
                              method=script_method(script))
        cmd = [python or sys.executable, str(RUNNER), str(out), str(script), *argv]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  env=dict(os.environ, **(env or {})), cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s", "command": cmd}
        if not out.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-6:]
            return {"error": f"exited with {proc.returncode}: " + " | ".join(tail), "command": cmd}
        data = json.loads(out.read_text())
    t = data["times"]
    t0 = t[warmup - 1] if warmup > 0 else data["began"]
    seconds = t[-1] - t0
    return {
        "steps_per_s": steps / seconds,
        "step_seconds": [b - a for a, b in zip([t0] + t[warmup:-1], t[warmup:])],
        "peak_memory_mb": data["memory"][-1],
        "command": cmd,
    }
