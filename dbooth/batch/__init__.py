"""Many subjects at once: each workspace's prior, train (and eval, export) as a Ray task.

``process_workspace`` (``task``) is one workspace's work and needs no Ray; ``run_batch`` (``runner``)
spreads workspaces over a Ray cluster; ``BatchView`` (``view``) shows them live. Ray is an optional
extra (``pip install 'dbooth[batch]'``) and is imported only when a batch starts.
"""

from dbooth.batch.task import BatchOptions, WorkspaceResult, process_workspace

__all__ = ["BatchOptions", "WorkspaceResult", "process_workspace"]
