"""``dbooth bench --e2e``: a whole ``dbooth train`` with the workspace's defaults, and where its time goes.

The step benchmark times steps only (no checkpoints, no validation, no save). This one runs what a user
runs: the manifest's defaults (800 steps, a checkpoint and validation samples every 200, the final save),
with class images present, in a fresh process per run, and reports the command's wall time beside the
trainer's own split (run.json ``timings``: load, caching, steps, checkpoints, validation, save) and the
disk the checkpoints hold at the end. It runs once with the current checkpoint policy and once with the
previous one (every checkpoint keeps the optimizer state and training waits while it is written), so the
difference is measured on the same workspace, alternately.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from pathlib import Path

POLICIES = {
    "current": "weights in each checkpoint, resume state in the newest, written in the background",
    "previous": "every checkpoint with the optimizer state, training waits for the write",
}
PHASES = ("load", "caching", "steps", "checkpoints", "validation", "save", "other", "total",
          "checkpoint_writes_background")


@contextlib.contextmanager
def previous_checkpoint_policy():
    """The checkpoints dbooth wrote before issue 11, for comparison: all state in every checkpoint, synchronously.

    (The previous code wrote through accelerate's ``save_state`` without the CPU copy; the copy is a memcpy
    of what is then written to disk, so it is a small part of the time measured here.)
    """
    from dbooth.training import checkpointing

    save, drop = checkpointing.CheckpointWriter.save, checkpointing.drop_resume_state

    def save_and_wait(self, step, protect=()):
        target = save(self, step, protect)
        self.wait()
        return target

    checkpointing.CheckpointWriter.save = save_and_wait
    checkpointing.drop_resume_state = lambda folder: None
    try:
        yield
    finally:
        checkpointing.CheckpointWriter.save, checkpointing.drop_resume_state = save, drop


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def summarise(rows: list[dict]) -> None:
    """Medians per policy of the wall time, each phase and the checkpoints' disk."""
    for row in rows:
        ok = [r for r in row["runs"] if "error" not in r]
        if not ok:
            row["error"] = row["runs"][0]["error"] if row["runs"] else "not run"
            continue
        row["wall_seconds"] = statistics.median(r["wall_seconds"] for r in ok)
        row["timings"] = {k: statistics.median(r["timings"].get(k, 0.0) for r in ok) for k in PHASES}
        row["checkpoint_bytes"] = statistics.median(r["checkpoint_bytes"] for r in ok)
        row["checkpoints"] = ok[0]["checkpoints"]
        row["steps"] = ok[0]["steps"]
