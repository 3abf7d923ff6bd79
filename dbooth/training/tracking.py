"""TensorBoard logging through accelerate's trackers, into ``RUN/tensorboard/``.

Every run writes into its own folder, so ``tensorboard --logdir WS/runs`` shows all of a workspace's
runs side by side. ``tensorboard`` is a dependency; should it be missing, a run warns once and trains on.
"""

from __future__ import annotations

import importlib.util

TRACKER = "tensorboard"  # accelerate's tracker name, and the folder under the run


def tracker_settings(enabled: bool, reporter) -> dict:
    """``Accelerator`` keyword arguments for logging, or none when it is off or TensorBoard is missing."""
    if not enabled:
        return {}
    if importlib.util.find_spec("tensorboard") is None:
        reporter.warn("train.tensorboard is on but the tensorboard package is missing; "
                      "`pip install tensorboard` (or set train.tensorboard: false) for loss curves")
        return {}
    return {"log_with": TRACKER}


def start_tracking(accelerator) -> None:
    """Open ``RUN/tensorboard/`` (the accelerator's logging dir is the run folder); a resumed run appends."""
    if accelerator.log_with:
        accelerator.init_trackers(TRACKER)


def log_images(accelerator, step: int, images: dict) -> None:
    """Validation images (``{tag: [PIL images of one size]}``) as image summaries at ``step``."""
    if not accelerator.trackers or not images:
        return
    import numpy as np

    tracker = accelerator.get_tracker(TRACKER)
    tracker.log_images({tag: np.stack([np.asarray(im) for im in ims]) for tag, ims in images.items()},
                       step=step, dataformats="NHWC")
