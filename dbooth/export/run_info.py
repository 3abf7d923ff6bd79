"""What an export needs to know about a finished run, read from its ``run.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dbooth.util.errors import DboothError
from dbooth.workspace.paths import require_inside
from dbooth.workspace.run_options import describe_options

METHODS = ("full", "lora")
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class RunInfo:
    """The fields of ``run.json`` that exports and model cards use."""

    run_dir: Path
    run_id: str
    method: str
    base_model: str
    identifier: str
    class_noun: str
    instance_prompt: str
    steps: int
    train_text_encoder: bool
    lora_rank: int | None
    lora_alpha: float | None
    family: str = "sd1"  # runs from before model families were recorded all trained SD 1.x
    prediction_type: str = "epsilon"
    options: tuple[str, ...] = ()  # what differs from plain DreamBooth (dbooth.workspace.run_options.describe_options)
    checkpoint: Path | None = None  # the checkpoint exported (``steps`` is its step); None = the final weights
    run_steps: int | None = None  # with a checkpoint: the steps the whole run trained (or planned, if unfinished)
    lora_weights: Path | None = None  # a checkpoint's LoRA file, written for the export (see run_export)

    @property
    def final_dir(self) -> Path:
        return self.run_dir / "final"

    @property
    def lora_file(self) -> Path:
        return self.lora_weights or self.final_dir / LORA_WEIGHTS_NAME

    @property
    def label(self) -> str:
        """``RUN`` for the final weights, ``RUN@400`` for a checkpoint: what names and cards call it."""
        return self.run_id if self.checkpoint is None else f"{self.run_id}@{self.steps}"

    @property
    def is_lora(self) -> bool:
        return self.method == "lora"


def read_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> RunInfo:
    """Read and check ``run_dir/run.json``; a missing or unfinished run is a user error.

    With ``checkpoint`` (a folder under ``run_dir/checkpoints``) the run may still be unfinished: the
    checkpoint is complete, and what is exported is its step.
    """
    run_dir = Path(run_dir)
    manifest = run_dir / "run.json"
    if not manifest.is_file():
        raise DboothError(f"no run.json in {run_dir}: pass a run folder (WS/runs/<run_id>)")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DboothError(f"{manifest}: invalid JSON at line {e.lineno}: {e.msg}") from None

    def need(key: str, kind: type):
        if key not in data:
            raise DboothError(f"{manifest}: missing key '{key}'")
        value = data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise DboothError(f"{manifest}: '{key}' must be {kind.__name__}, got {value!r}")
        return value

    method = need("method", str)
    if method not in METHODS:
        raise DboothError(f"{manifest}: 'method' is {method!r}; expected one of {', '.join(METHODS)}")
    status = data.get("status")
    if status != "complete" and checkpoint is None:
        raise DboothError(
            f"run {run_dir.name} has status {status!r}, not 'complete': finish or resume training before exporting"
        )
    rank = alpha = None
    if method == "lora":
        lora = data.get("lora")
        if not isinstance(lora, dict) or "rank" not in lora:
            raise DboothError(f"{manifest}: a LoRA run needs 'lora': {{'rank': ..., 'alpha': ...}}")
        rank = int(lora["rank"])
        alpha = float(lora.get("alpha") if lora.get("alpha") is not None else rank)

    info = RunInfo(
        run_dir=run_dir,
        run_id=str(data.get("run_id") or run_dir.name),
        method=method,
        base_model=need("base_model", str),
        identifier=need("identifier", str),
        class_noun=need("class_noun", str),
        instance_prompt=need("instance_prompt", str),
        steps=need("steps", int),
        train_text_encoder=bool(data.get("train_text_encoder", False)),
        lora_rank=rank,
        lora_alpha=alpha,
        family=str(data.get("family") or "sd1"),
        prediction_type=str(data.get("prediction_type") or "epsilon"),
        options=tuple(describe_options(data.get("options") if isinstance(data.get("options"), dict) else None)),
    )
    if checkpoint is not None:
        return _at_checkpoint(info, Path(checkpoint))
    expected = info.lora_file if info.is_lora else info.final_dir / "model_index.json"
    require_inside([expected], run_dir, "run outputs")  # export reads them and writes beside them
    if not expected.is_file():
        raise DboothError(f"run {info.run_id} has no {expected.relative_to(run_dir)}: the run folder is incomplete")
    return info


def _at_checkpoint(info: RunInfo, checkpoint: Path) -> RunInfo:
    from dataclasses import replace

    from dbooth.training.state import checkpoint_step

    try:
        step = checkpoint_step(checkpoint)
    except ValueError:
        raise DboothError(f"{checkpoint} is not a checkpoint folder (RUN/checkpoints/step-NNNNNN)") from None
    weights = checkpoint / "trainable_0.safetensors"
    require_inside([weights], info.run_dir, "run checkpoints")
    if not weights.is_file():
        raise DboothError(f"checkpoint {checkpoint.name} of run {info.run_id} has no {weights.name}: it is incomplete")
    return replace(info, checkpoint=checkpoint, run_steps=info.steps, steps=step)
