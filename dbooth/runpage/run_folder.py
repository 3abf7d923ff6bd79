"""Everything the run page shows, read from the run folder's files (and the workspace's samples): run.json,
config.yaml, loss.csv, validation/, eval.json. Read afresh each time, so the page never goes stale."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dbooth.training.history import HISTORY_FILE, read_history
from dbooth.runpage.step_images import StepImages, read_step_images
from dbooth.util.errors import DboothError
from dbooth.workspace.folder import MANIFEST_NAME, Run
from dbooth.workspace.status import RunStatus, run_status

EVAL_FILE = "eval.json"
FALLBACK_PIPELINE = "StableDiffusionPipeline"


@dataclass
class RunFolder:
    run: Run
    info: dict
    status: RunStatus
    manifest: object | None  # the run's config.yaml as a Manifest; None when it cannot be read
    history: list[dict]
    validation: StepImages | None
    eval: dict | None
    workspace: Path | None  # the workspace the run belongs to (None for a run folder moved elsewhere)

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def lora(self) -> bool:
        return self.info.get("method") == "lora"

    @property
    def upscaler(self) -> bool:
        return self.info.get("stage") == "upscaler"

    @property
    def pipeline(self) -> str:
        """The diffusers pipeline class of the run's family (loading lines name it)."""
        from dbooth.families import get_family

        try:
            return get_family(self.info.get("family") or "sd1").pipeline_class_name
        except DboothError:
            return FALLBACK_PIPELINE

    @property
    def last_step(self) -> int | None:
        """The newest step the run recorded: the loss history's, else run.json's."""
        if self.history:
            return self.history[-1]["step"]
        return self.status.steps_done

    @property
    def best(self) -> str | None:
        """The best checkpoint's name (``step-N`` or ``final``) when one was chosen."""
        return self.info.get("best_checkpoint")


def read_run_folder(run_dir: Path) -> RunFolder:
    """The run in ``run_dir``; a missing or damaged run.json is a DboothError (there is nothing to show)."""
    run = Run(Path(run_dir))
    info = run.info()
    ws = run.dir.parent.parent
    return RunFolder(
        run=run,
        info=info,
        status=run_status(run),
        manifest=_manifest(run),
        history=read_history(run.dir / HISTORY_FILE),
        validation=read_step_images(run.validation_dir),
        eval=_eval(run.dir / EVAL_FILE),
        workspace=ws if run.dir.parent.name == "runs" and (ws / MANIFEST_NAME).is_file() else None,
    )


def _manifest(run: Run):
    from dbooth.workspace.config import load_manifest

    try:
        return load_manifest(run.config_path) if run.config_path.is_file() else None
    except (DboothError, OSError):
        return None  # written by another dbooth version: the page shows run.json's record instead


def _eval(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("metrics"), dict) else None
