"""One measurement in a fresh process: ``python -m dbooth.bench.worker SPEC.json OUT.json``.

A fresh process per configuration keeps peak memory (``ru_maxrss`` never goes down) from one
configuration out of the next. The process writes only OUT.json; it never prints.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from dbooth.util.reporting import Reporter


class _Finished(Exception):
    """Raised from the reporter after the last timed step, so saving the run is not measured."""


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def device_info() -> dict:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        return {"device": f"cuda: {name}", "device_type": "cuda", "device_name": name}
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return {"device": f"cpu: {name}, {threads} threads", "device_type": "cpu", "device_name": name,
            "threads": threads}


class StepClock(Reporter):
    """Timestamps and memory after every completed step (or generated batch).

    On a GPU it waits for the device at the steps in ``sync_at`` (all of them when None), so the timed
    window's ends are the work's and not the launches': training syncs only at the end of the warm-up and at
    the last step, as a run does not sync in between (``dbooth.training.readings``); the step times in
    between are the host's."""

    def __init__(self, total: int, stop_at_end: bool, sync_at: set[int] | None = None):
        self.total, self.stop_at_end, self.sync_at = total, stop_at_end, sync_at
        self.cuda = torch.cuda.is_available()
        self.started: float | None = None
        self.times: list[float] = []
        self.memory: list[float] = []
        self.counts: list[int] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self.started = time.perf_counter()

    def advance(self, completed: int, **fields) -> None:
        if self.cuda and (self.sync_at is None or completed in self.sync_at):
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.counts.append(completed)
        self.memory.append(torch.cuda.max_memory_allocated() / 2**20 if self.cuda else rss_peak_mb())
        if self.stop_at_end and completed >= self.total:
            raise _Finished


class _Observer:
    """Light patches that record what the trainer really did (for checks, not for speed)."""

    def __init__(self, adamw_impl: str | None):
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel

        import dbooth.training.loop as loop

        self.pipe = None
        self.optimizer_flags: dict = {}
        self.vae_encodes = 0
        self.text_encodes = 0
        observer = self

        original_load = loop.load_pipeline
        self._undo = [
            (loop, "load_pipeline", original_load),
            (AutoencoderKL, "encode", AutoencoderKL.encode),
            (CLIPTextModel, "forward", CLIPTextModel.forward),
            (torch.optim, "AdamW", torch.optim.AdamW),
        ]

        def load_pipeline(*args, **kwargs):
            pipe = original_load(*args, **kwargs)
            if observer.pipe is None:
                observer.pipe = pipe
            return pipe

        loop.load_pipeline = load_pipeline

        encode = AutoencoderKL.encode

        def counted_encode(self, *args, **kwargs):
            observer.vae_encodes += 1
            return encode(self, *args, **kwargs)

        AutoencoderKL.encode = counted_encode
        forward = CLIPTextModel.forward

        def counted_forward(self, *args, **kwargs):
            observer.text_encodes += 1
            return forward(self, *args, **kwargs)

        CLIPTextModel.forward = counted_forward

        base = torch.optim.AdamW

        class AdamW(base):  # a subclass, so isinstance checks elsewhere still hold
            def __init__(self, params, **kwargs):
                if adamw_impl is not None:
                    kwargs.update(fused=adamw_impl == "fused", foreach=adamw_impl == "foreach")
                super().__init__(params, **kwargs)
                observer.optimizer_flags = {
                    "fused": bool(self.defaults.get("fused")),
                    "foreach": bool(self.defaults.get("foreach")),
                }

        torch.optim.AdamW = AdamW

    def close(self) -> None:
        """Put back everything patched (so the worker can also run inside a test process)."""
        for owner, name, value in self._undo:
            setattr(owner, name, value)

    def settings_seen(self) -> dict:
        if self.pipe is None:
            return {}
        unet = getattr(self.pipe, "unet", None) or self.pipe.transformer  # SD 3.5 and FLUX: a transformer
        procs = sorted({type(p).__name__ for p in getattr(unet, "attn_processors", {}).values()})
        conv = unet.conv_in.weight if hasattr(unet, "conv_in") else torch.empty(0)  # a transformer has no conv_in
        impl = "for-loop"
        if self.optimizer_flags.get("fused"):
            impl = "fused"
        elif self.optimizer_flags.get("foreach"):
            impl = "foreach"
        return {
            "attention_processors": procs,
            "channels_last": bool(conv.dim() == 4 and conv.is_contiguous(memory_format=torch.channels_last)
                                  and not conv.is_contiguous()),
            "gradient_checkpointing": bool(getattr(unet, "is_gradient_checkpointing", False)),
            "adamw": impl,
        }


def run_training_spec(spec: dict) -> dict:
    from dbooth.workspace.config import apply_overrides
    from dbooth.training import train
    from dbooth.workspace.folder import open_workspace

    warmup, steps = int(spec["warmup"]), int(spec["steps"])
    total = warmup + steps
    observer = _Observer(spec.get("patches", {}).get("adamw"))
    ws = open_workspace(spec["workspace"])
    manifest = apply_overrides(ws.manifest(), {**spec["overrides"], "train.max_steps": total})
    clock = StepClock(total, stop_at_end=True, sync_at={warmup, total})
    if clock.cuda:
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    encodes_at_start = [0, 0]

    original_start = clock.start

    def start(description, total, completed=0):
        encodes_at_start[:] = [observer.vae_encodes, observer.text_encodes]
        original_start(description, total, completed)

    clock.start = start
    try:
        train(ws, manifest, reporter=clock)
    except _Finished:
        pass
    finally:
        observer.close()
    if len(clock.times) < total:
        raise RuntimeError(f"trainer stopped after {len(clock.times)} of {total} steps")
    from dbooth.training.history import HISTORY_FILE, read_history
    from dbooth.workspace.folder import find_run

    losses = [row["loss"] for row in read_history(find_run(ws, complete=False).dir / HISTORY_FILE)]
    t = clock.times
    t0 = t[warmup - 1] if warmup > 0 else clock.started
    timed = t[warmup:]
    intervals = [b - a for a, b in zip([t0] + timed[:-1], timed)]
    seconds = timed[-1] - t0
    return {
        "steps_per_s": steps / seconds,
        "step_seconds": intervals,
        "timed_seconds": seconds,
        "setup_seconds": clock.started - began,
        "warmup_seconds": t0 - clock.started,
        "peak_memory_mb": clock.memory[-1],
        "peak_memory_kind": "cuda max_memory_allocated" if clock.cuda else "peak RSS (ru_maxrss)",
        "peak_memory_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if clock.cuda else None,
        "losses": losses,  # every step's, from the run's loss history
        "observed": {
            **observer.settings_seen(),
            "vae_encodes_per_step": (observer.vae_encodes - encodes_at_start[0]) / total,
            "text_encoder_calls_per_step": (observer.text_encodes - encodes_at_start[1]) / total,
        },
        "warnings": clock.warnings,
    }


def run_end_to_end_spec(spec: dict) -> dict:
    """A whole training run with the workspace's settings, as ``dbooth train`` runs it; its run.json split."""
    import contextlib

    from dbooth import api
    from dbooth.bench.end_to_end import folder_bytes, previous_checkpoint_policy
    from dbooth.workspace.folder import open_workspace

    ws = open_workspace(spec["workspace"])
    policy = previous_checkpoint_policy() if spec.get("policy") == "previous" else contextlib.nullcontext()
    with policy:
        result = api.train(ws, spec.get("overrides") or None)
    info = result.run.info()
    return {
        "timings": info["timings"],
        "steps": result.steps,
        "final_loss": result.final_loss,
        "checkpoints": [p.name for p in result.run.checkpoints()],
        "checkpoint_bytes": folder_bytes(result.run.checkpoints_dir),
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else rss_peak_mb(),
    }


def run_generation_spec(spec: dict) -> dict:
    """Class-image generation: batches of ``batch`` images; the first batch is warm-up."""
    from dbooth.workspace.config import apply_overrides
    from dbooth.families.loading import inference_device, inference_dtype, load_pipeline
    from dbooth.generate.class_images import generate_class_images
    from dbooth.workspace.prompts import class_prompt
    from dbooth.workspace.folder import open_workspace

    ws = open_workspace(spec["workspace"])
    batch, batches = int(spec["batch"]), int(spec["batches"])
    n = batch * batches
    manifest = apply_overrides(ws.manifest(), {
        **spec["overrides"], "prior.num_class_images": n, "prior.batch_size": batch,
        "prior.steps": spec.get("steps"),
    })
    clock = StepClock(n, stop_at_end=False)
    if clock.cuda:
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        split = None
        if spec.get("scheduler") == "dpm++":
            split = generate_class_images(Path(out), manifest, reporter=clock).times.as_dict()
        else:  # the base model's own scheduler, as diffusers' example script samples
            pipe = load_pipeline(manifest.base_model, dtype=inference_dtype())
            pipe.to(inference_device())
            clock.start("class images", n)
            prompt = class_prompt(manifest)
            for k in range(batches):
                pipe([prompt] * batch, num_inference_steps=manifest.prior.steps,
                     guidance_scale=manifest.prior.guidance_scale, height=manifest.train.resolution,
                     width=manifest.train.resolution,
                     generator=[torch.Generator("cpu").manual_seed(k * batch + i) for i in range(batch)])
                clock.advance((k + 1) * batch)
    t = clock.times
    timed_images = n - batch
    seconds = t[-1] - t[0]
    return {
        "images_per_s": timed_images / seconds if timed_images else batch / (t[0] - clock.started),
        "batch_seconds": [b - a for a, b in zip([clock.started] + t[:-1], t)],
        "setup_seconds": clock.started - began,
        "steps": manifest.prior.steps,
        "batch": batch,
        "peak_memory_mb": clock.memory[-1],
        "split": split,  # dbooth's own generation: load, denoise, decode, PNG writes (beside), waited
    }


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    spec = json.loads(spec_path.read_text())
    try:
        run = {"train": run_training_spec, "e2e": run_end_to_end_spec}.get(spec["kind"], run_generation_spec)
        result = run(spec)
        result.update(device_info())
        result["torch"] = torch.__version__
        result["process_peak_memory_mb"] = rss_peak_mb()
    except Exception as exc:  # reported to the parent, which decides whether it is fatal
        result = {"error": f"{type(exc).__name__}: {exc}".strip()[:2000], "traceback": traceback.format_exc()[-4000:]}
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
