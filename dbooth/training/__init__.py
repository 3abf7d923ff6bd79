"""DreamBooth training: input checks, data caching, adapters, checkpoints and the loop.

``train`` checks the inputs first (no torch needed, so mistakes are reported at once) and only
then imports the loop and loads the model.
"""

from __future__ import annotations


def train(ws, manifest, *, resume: bool = False, reporter=None, stage: str = "base", extend_to: int | None = None):
    """Train a new run (or resume the latest unfinished one of ``stage``, to ``extend_to`` steps when given, else to
    its own budget) and write its outputs.

    ``stage="upscaler"`` is the paper's stage (b): the manifest's ``upscaler`` section (dbooth.workspace.stages)."""
    from dbooth.training.distributed import decided_by_main, is_main
    from dbooth.util.reporting import Reporter
    from dbooth.training.inputs import gather_inputs

    reporter = reporter if reporter is not None and is_main() else Reporter()  # one process reports
    if stage == "upscaler":
        from dbooth.workspace.stages import upscaler_manifest

        manifest = upscaler_manifest(manifest)
    # with several processes the main one checks the inputs and the others train on what it found
    inputs = decided_by_main(lambda: gather_inputs(ws, manifest, resume=resume, reporter=reporter, stage=stage,
                                                          extend_to=extend_to))
    from dbooth.training.loop import train_from_inputs

    return train_from_inputs(ws, inputs, reporter=reporter)


__all__ = ["train"]
