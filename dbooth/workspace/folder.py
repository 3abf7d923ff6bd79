"""One folder per subject: ``dbooth.yaml``, ``instance/``, ``class/``, ``runs/``, ``samples/``."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dbooth.util.errors import DboothError
from dbooth.util.fsutil import atomic_write_text, check_writable, remove_temporaries
from dbooth.workspace.prompts import caption_file

MANIFEST_NAME = "dbooth.yaml"
RUN_INFO = "run.json"
# what resuming needs besides the weights, kept only in a run's newest checkpoint (accelerate's file names);
# optimizer.bin first: it is removed first, so a checkpoint without it has no resume state
RESUME_STATE_FILES = ("optimizer.bin", "scheduler.bin", "scaler.pt")


def has_resume_state(checkpoint: Path) -> bool:
    """Whether a checkpoint folder can be resumed from (optimizer, scheduler and RNG states), not only sampled."""
    return ((checkpoint / "optimizer.bin").is_file() and (checkpoint / "scheduler.bin").is_file()
            and any(checkpoint.glob("random_states_*.pkl")))


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def instance_dir(self) -> Path:
        return self.root / "instance"

    @property
    def class_dir(self) -> Path:
        return self.root / "class"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    def manifest(self):
        from dbooth.workspace.config import load_manifest

        return load_manifest(self.manifest_path)


def open_workspace(path: str | Path = ".") -> Workspace:
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise DboothError(f"workspace {path}: is a file, not a folder; pass the workspace folder with -w")
    if not root.is_dir():
        raise DboothError(f"workspace {path}: folder does not exist; create one with `dbooth init NAME --class NOUN`")
    ws = Workspace(root)
    if not ws.manifest_path.is_file():
        raise DboothError(
            f"workspace {path}: no {MANIFEST_NAME} here; pass -w WORKSPACE or create one with `dbooth init NAME --class NOUN`"
        )
    return ws


def create_workspace(path: str | Path, manifest, images: Path | None = None) -> Workspace:
    """Create the folder layout and manifest; refuses to touch an existing path."""
    from dbooth.workspace.config import write_manifest

    root = Path(path).expanduser()
    if root.exists():
        raise DboothError(f"workspace {path}: already exists; choose another name or remove it first "
                           "(`dbooth init WS --add-subject NAME` adds a subject to it)")
    check_writable(root, "workspace")
    if images is not None:
        from dbooth.util.images import mask_file, scan_folder

        found = scan_folder(Path(images).expanduser(), what="instance images", min_side=0)
    tmp = root.with_name(f".{root.name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for sub in ("instance", "class", "runs"):
            (tmp / sub).mkdir(parents=True)
        if images is not None:
            for p in found.paths:
                shutil.copy2(p, tmp / "instance" / p.name)
                # a per-photo caption (instance_captions: files) and loss mask come along
                for extra in (caption_file(p), mask_file(p)):
                    if extra.is_file():
                        shutil.copy2(extra, tmp / "instance" / extra.name)
        write_manifest(tmp / MANIFEST_NAME, manifest)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Workspace(root)


@dataclass(frozen=True)
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def info_path(self) -> Path:
        return self.dir / RUN_INFO

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def validation_dir(self) -> Path:
        return self.dir / "validation"

    @property
    def final_dir(self) -> Path:
        return self.dir / "final"

    @property
    def lora_file(self) -> Path:
        return self.final_dir / "pytorch_lora_weights.safetensors"

    def info(self) -> dict:
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, ValueError) as exc:
            raise DboothError(f"run {self.dir}: unreadable {RUN_INFO} ({exc}); the run folder is damaged") from None

    def write_info(self, info: dict) -> None:
        atomic_write_text(self.info_path, json.dumps(info, indent=2) + "\n")

    @property
    def stage(self) -> str:
        """``base`` for the text-to-image model (stage a), ``upscaler`` for stage (b)."""
        return self.info().get("stage") or "base"

    @property
    def complete(self) -> bool:
        return self.info_path.is_file() and self.info().get("status") == "complete"

    def checkpoints(self) -> list[Path]:
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and re.fullmatch(r"step-\d+", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def resume_checkpoint(self) -> Path | None:
        """The newest checkpoint that holds its resume state (older ones keep only their weights)."""
        full = [c for c in self.checkpoints() if has_resume_state(c)]
        return full[-1] if full else None


def new_run(ws: Workspace, method: str) -> Run:
    ws.runs_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = ws.runs_dir / f"{stamp}-{method}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = ws.runs_dir / f"{stamp}-{method}-{n}"
    run_dir.mkdir(parents=True)
    return Run(run_dir)


def clear_leftovers(ws: Workspace) -> int:
    """Remove the temporary files a killed ``prior`` or ``train`` left behind; returns how many.

    Only the class images and unfinished runs are touched (exports of finished runs may be under way).
    """
    count = len(remove_temporaries(ws.class_dir))
    if ws.class_dir.is_dir():  # further subjects' classes: class/NOUN/
        count += sum(len(remove_temporaries(p)) for p in ws.class_dir.iterdir() if p.is_dir())
    for run in list_runs(ws):
        if not run.complete:
            count += len(remove_temporaries(run.dir)) + len(remove_temporaries(run.checkpoints_dir))
    return count


def list_runs(ws: Workspace) -> list[Run]:
    if not ws.runs_dir.is_dir():
        return []
    runs = [Run(p) for p in ws.runs_dir.iterdir() if p.is_dir() and (p / RUN_INFO).is_file()]
    return sorted(runs, key=lambda r: (r.info().get("created", 0), r.id))


def find_run(ws: Workspace, run_id: str | None = None, *, complete: bool = True, stage: str = "base") -> Run:
    """The named run (of any stage), or the latest one of ``stage`` (the latest complete one when ``complete``)."""
    runs = list_runs(ws)
    if run_id is not None:
        path = Path(run_id)
        candidates = [r for r in runs if r.id == run_id or r.dir.resolve() == path.resolve()]
        if not candidates:
            names = ", ".join(r.id for r in runs[-5:]) or "none yet"
            raise DboothError(f"run {run_id}: not found in {ws.runs_dir} (recent: {names}); pass --run with one of them")
        run = candidates[0]
        if complete and not run.complete:
            raise DboothError(f"run {run.id}: has not finished training; resume it with `dbooth train --resume`")
        return run
    pool = [r for r in runs if r.stage == stage and (r.complete or not complete)]
    if not pool:
        what = ("finished " if complete else "") + ("upscaler runs" if stage == "upscaler" else "training runs")
        verb = "dbooth train --upscaler" if stage == "upscaler" else "dbooth train"
        raise DboothError(f"workspace {ws.root}: no {what} in {ws.runs_dir}; run `{verb}` first")
    return pool[-1]


def split_run_ref(ref: str | None) -> tuple[str | None, str | None]:
    """``RUN@best`` -> (RUN, "best"), ``RUN@400`` -> (RUN, "400"), ``@best`` -> (None, "best"), ``RUN`` -> (RUN, None)."""
    if ref is None or "@" not in ref:
        return ref, None
    run_id, _, at = ref.rpartition("@")
    return run_id or None, at


def checkpoint_at(run: Run, at: str | None) -> Path | None:
    """The checkpoint folder ``at`` names (``best``, a step, ``step-NNNNNN``); None means the final weights."""
    if at is None or at == "final":
        return None
    name = at
    if at == "best":
        name = run.info().get("best_checkpoint")
        if not name:
            raise DboothError(f"run {run.id}: no best checkpoint chosen yet; "
                              f"score its checkpoints with `dbooth eval --run {run.id} --checkpoints`")
        if name == "final":
            return None
    elif at.isdigit():
        name = f"step-{int(at):06d}"
    found = {p.name: p for p in run.checkpoints()}
    if name not in found:
        saved = ", ".join(str(int(n.split("-")[1])) for n in found) or "none"
        raise DboothError(f"run {run.id}: has no checkpoint {at!r} (saved steps: {saved}); "
                          f"pass {run.id}@STEP with one of them, {run.id}@best or {run.id}@final")
    return found[name]


def find_run_at(ws: Workspace, ref: str | None, *, stage: str = "base") -> tuple[Run, Path | None]:
    """``find_run`` for ``RUN``, ``RUN@best``, ``RUN@STEP`` or ``RUN@final``: the run and the checkpoint (None: final)."""
    run_id, at = split_run_ref(ref)
    run = find_run(ws, run_id, complete=at in (None, "final", "best"), stage=stage)
    return run, checkpoint_at(run, at)
