"""Run folders made by hand, file by file as dbooth writes them, so the run page can be checked without a model."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from PIL import Image

from dbooth.training.history import LossHistory
from dbooth.util.pngmeta import write_png
from dbooth.workspace.config import Manifest, apply_overrides, render_manifest
from dbooth.workspace.folder import create_workspace

RUN_ID = "20260101-000000-lora"
PROMPTS = ["a photo of sks dog in the jungle", "a sks dog <on> the \"beach\" & more"]


def workspace(root: Path, **overrides) -> Path:
    manifest = apply_overrides(Manifest(class_noun="dog"), {"train.resolution": 64, **overrides})
    return create_workspace(root, manifest).root


def run_folder(ws: Path, run_id: str = RUN_ID, method: str = "lora", status: str = "complete", steps: int = 40,
               **info) -> Path:
    """run.json, config.yaml and the final weights of a run as ``dbooth train`` leaves them."""
    run = ws / "runs" / run_id
    run.mkdir(parents=True)
    record = {"run_id": run_id, "created": 1.0, "method": method, "base_model": "some/base", "family": "sd1",
              "identifier": "sks", "class_noun": "dog", "instance_prompt": "a photo of sks dog",
              "class_prompt": "a photo of dog", "steps": steps, "planned_steps": steps,
              "train_text_encoder": False, "lora": {"rank": 4, "alpha": 4.0} if method == "lora" else None,
              "options": {"optimizer": "adamw", "snr_gamma": 5.0}, "status": status, "pid": None,
              "train_seconds": 12.5, "final_loss": 0.05, **info}
    (run / "run.json").write_text(json.dumps(record))
    manifest = apply_overrides(Manifest(class_noun="dog"), {"train.method": method, "train.max_steps": steps,
                                                            "train.validation_prompts": PROMPTS})
    (run / "config.yaml").write_text(render_manifest(manifest))
    if status == "complete":
        (run / "final").mkdir()
        if method == "lora":
            (run / "final" / "pytorch_lora_weights.safetensors").write_bytes(safetensors({}))
        else:
            (run / "final" / "model_index.json").write_text("{}")
    return run


def history(run: Path, steps: int = 40, prior: bool = True) -> None:
    log = LossHistory(run)
    for s in range(1, steps + 1):
        instance, prior_loss = 0.1 + 0.05 * (s % 3), 0.05
        log.record(s, loss=instance + prior_loss if prior else instance, lr=1e-4,
                   instance_loss=instance if prior else None, prior_loss=prior_loss if prior else None)
    log.close()


def image(path: Path, colour: str = "red", size: int = 64, record: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, Image.new("RGB", (size, size), colour), record or {})


def validation(run: Path, steps=(10, 20, 30, 40), seeds=(0, 1)) -> None:
    for step in steps:
        for p, prompt in enumerate(PROMPTS):
            for seed in seeds:
                image(run / "validation" / f"step-{step:06d}" / f"p{p}-s{seed}.png", "blue",
                      record={"prompt": prompt, "seed": seed, "step": step})


def checkpoint(run: Path, step: int, resume: bool = True) -> Path:
    folder = run / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "trainable_0.safetensors").write_bytes(safetensors({}))
    if resume:  # what `dbooth train --resume` needs, kept in the newest checkpoint
        for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
            (folder / name).write_bytes(b"x")
    return folder


def eval_data(best: str | None | bool = "step-000020", oracle: bool = True) -> dict:
    metrics = {
        "base": {"dino": 0.1012, "clip_i": 0.5533, "clip_t": 0.3104, "pres": 0.2001, "div_dino": 0.4417},
        "step-000020": {"dino": 0.5008, "clip_i": 0.7123, "clip_t": 0.2950, "pres": 0.2455, "div_dino": 0.3311},
        "final": {"dino": 0.6204, "clip_i": 0.7789, "clip_t": 0.2605, "pres": 0.3012, "div_dino": None},
    }
    data = {"run": RUN_ID, "created": "2026-01-01T00:00:00", "prompts": "dreambench:live_subjects",
            "prompt_list": PROMPTS, "class_prompt": "a photo of dog", "images_per_prompt": 2, "class_images": 2,
            "seed": 0, "encoders": {"dino": "d", "clip": "c"}, "judge": "encoders", "div": "div_dino: ...",
            "metrics": metrics}
    if oracle:
        data["oracle"] = {"subject": "striped_heart", "metrics": {
            n: {"subject_fidelity": 0.11 + i / 10, "pres": 0.0525 + i / 100, "div": 0.2071}
            for i, n in enumerate(metrics)}}
    if best is not False:
        data["best"] = {"checkpoint": best, "rule": "highest dino with clip_t >= 0.2904", "eligible": []}
    return data


def evaluation(run: Path, data: dict | None = None) -> dict:
    """eval.json and the grids ``dbooth eval`` keeps (base, best, final) as ``dbooth.eval.report`` names them."""
    from dbooth.eval.report import CLASS, grid_file, shown_models

    data = data or eval_data()
    (run / "eval.json").write_text(json.dumps(data))
    for model in shown_models(data):
        for index in [*range(1, len(data["prompt_list"]) + 1), CLASS]:
            image(run / grid_file(index, model), "green", record={})
    return data


def samples(ws: Path, label: str = RUN_ID, stamp: str = "20260101-000100", n: int = 2) -> Path:
    folder = ws / "samples" / label / stamp
    for k in range(n):
        image(folder / f"{k:03d}-seed{k}.png", "yellow", record={"prompt": "a sks dog on the moon", "seed": k})
    image(folder / "grid.png", "yellow", size=128)
    return folder


def safetensors(metadata: dict) -> bytes:
    """A safetensors file with no tensors and ``metadata`` in its header."""
    header = json.dumps({"__metadata__": metadata} if metadata else {}).encode()
    return struct.pack("<Q", len(header)) + header


def export(run: Path, name: str = "ws-20260101-000000.safetensors", fmt: str = "lora-kohya") -> Path:
    path = run / "export" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors({"dbooth.format": fmt, "dbooth.dtype": "fp16"}))
    path.with_suffix(".md").write_text("# card\n")
    return path
