"""Many subjects at once: each workspace's prior, train (and eval, export) as a Ray task.

``process_workspace`` (``task``) is one workspace's work and needs no Ray; ``run_batch`` (``runner``)
spreads workspaces over a Ray cluster (``run_workspaces``: the ``dbooth batch`` verb); ``dbooth.cli.batch_view``
shows them live. Ray is an optional
extra (``pip install 'dbooth[batch]'``) and is imported only when a batch starts.
"""

from dbooth.batch.task import BatchOptions, WorkspaceResult, process_workspace


def run_workspaces(*args, **kwargs):
    """``dbooth batch``: see ``dbooth.batch.runner.run_workspaces`` (imported when called: Ray is optional)."""
    from dbooth.batch.runner import run_workspaces as run

    return run(*args, **kwargs)


__all__ = ["BatchOptions", "WorkspaceResult", "process_workspace", "run_workspaces"]
