"""What a workspace holds, at a glance: the subject, its photos and class images, and every run's state.

Read-only and model-free: no torch, no image decoding beyond PNG text chunks, so ``dbooth status``
answers at once even for a workspace with hundreds of class images and several multi-GB runs.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field

from dbooth.util.fsutil import disk_size, pid_alive
from dbooth.util.images import list_images
from dbooth.workspace.lock import held_by
from dbooth.util.pngmeta import read_record
from dbooth.runpage import PAGE_FILE
from dbooth.workspace.run_options import describe_options
from dbooth.workspace.subjects import subjects
from dbooth.workspace.folder import Run, Workspace, list_runs

# run.json "status" -> what status reports, before checking whether a "running" process still lives
STATES = ("running", "finished", "interrupted", "stopped", "failed")


@dataclass
class RunStatus:
    id: str
    method: str
    state: str  # one of STATES; "stopped": run.json says running but its process is gone
    steps_done: int | None
    steps_planned: int | None
    resumable: bool
    final_loss: float | None
    train_seconds: float | None
    size_bytes: int
    checkpoints: list[int] = field(default_factory=list)  # steps
    resume_from: int | None = None  # the checkpoint that keeps the optimizer state (the others hold weights only)
    best_checkpoint: str | None = None
    error: str | None = None
    pid: int | None = None
    options: list[str] = field(default_factory=list)  # what differs from plain DreamBooth: DoRA, EMA, Min-SNR ...
    timings: dict | None = None  # seconds per phase of the run's last invocation: load, caching, steps, ...
    page: str | None = None  # the run page, RUN/report.html (dbooth.runpage), once a verb has written it


@dataclass
class WorkspaceStatus:
    root: str
    class_noun: str
    identifier: str
    base_model: str
    resolution: int
    photos: int
    class_images: int
    class_images_wanted: int
    class_images_stale: int  # generated with another prompt, model or settings than the manifest's
    prior_enabled: bool
    runs: list[RunStatus]
    busy: dict | None = None  # who holds the workspace lock now (pid, host, verb, since), if anyone
    subjects: list[dict] = field(default_factory=list)  # further subjects: name, identifier, class, photos, class images

    def to_dict(self) -> dict:
        return asdict(self)


def workspace_status(ws: Workspace) -> WorkspaceStatus:
    """Everything ``dbooth status`` shows, as data."""
    from dbooth.generate.class_images import class_shapes, photo_sizes, recipe, stale_reason

    manifest = ws.manifest()
    want = recipe(manifest)
    shapes = class_shapes(manifest, photo_sizes(ws, manifest).get(ws.class_dir))  # headers only
    class_images = list_images(ws.class_dir)
    stale = 0
    for path in class_images:
        record = read_record(path) if path.suffix.lower() == ".png" else None
        if record is not None and stale_reason(record, want, shapes, manifest.train.resolution):
            stale += 1
    return WorkspaceStatus(
        root=str(ws.root),
        class_noun=manifest.class_noun,
        identifier=manifest.identifier,
        base_model=manifest.base_model,
        resolution=manifest.train.resolution,
        photos=len(list_images(ws.instance_dir)),
        class_images=len(class_images),
        class_images_wanted=sum(n for _, n in shapes),
        class_images_stale=stale,
        prior_enabled=manifest.prior.enabled,
        runs=[run_status(r) for r in list_runs(ws)],
        busy=held_by(ws.root),
        subjects=[
            {"name": s.name, "identifier": s.identifier, "class_noun": s.class_noun,
             "photos": len(list_images(s.instance_dir)), "class_images": len(list_images(s.class_dir)),
             "class_dir": str(s.class_dir.relative_to(ws.root))}
            for s in subjects(ws, manifest)[1:]
        ],
    )


def run_status(run: Run) -> RunStatus:
    info = run.info()
    checkpoints = [int(p.name.split("-")[1]) for p in run.checkpoints()]
    full = run.resume_checkpoint()
    resume_from = int(full.name.split("-")[1]) if full is not None else None
    state = {"complete": "finished"}.get(info.get("status"), info.get("status", "failed"))
    pid = info.get("pid")
    if state == "running" and not _alive(pid, info.get("host")):
        state = "stopped"
    if state == "finished":
        done = info.get("steps")
    elif state == "interrupted":
        done = info.get("interrupted_at")
    else:
        done = checkpoints[-1] if checkpoints else 0
    return RunStatus(
        id=run.id,
        method=info.get("method", "?"),
        state=state,
        steps_done=done,
        steps_planned=info.get("planned_steps", info.get("steps")),
        resumable=state != "finished" and state != "running" and resume_from is not None,
        final_loss=info.get("final_loss") if state == "finished" else None,
        train_seconds=info.get("train_seconds"),
        size_bytes=disk_size(run.dir),
        checkpoints=checkpoints,
        resume_from=resume_from,
        best_checkpoint=info.get("best_checkpoint"),
        error=info.get("error"),
        pid=pid if state == "running" else None,
        options=(["upscaler"] if info.get("stage") == "upscaler" else []) + describe_options(info.get("options")),
        timings=info.get("timings"),
        page=str(run.dir / PAGE_FILE) if (run.dir / PAGE_FILE).is_file() else None,
    )


def _alive(pid, host) -> bool:
    """Whether the process that wrote run.json still runs; unknown (another host, no pid) counts as alive."""
    if not isinstance(pid, int):
        return True  # written by a dbooth that did not record its pid
    if host and host != socket.gethostname():
        return True
    return pid_alive(pid)


