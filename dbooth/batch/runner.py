"""Many workspaces as Ray tasks: on a Ray cluster, or on a Ray instance started on this machine.

Ray places each workspace's task where its CPUs and GPUs are free and reports back; dbooth keeps no
scheduler of its own. Every result comes back (a failed workspace with its error line); a failure that
may pass on retry (a crash, a lost node, anything but a ``DboothError``) is tried again up to
``retries`` more times, and the next attempt resumes the run from its last checkpoint. Progress comes
from the tasks through a Ray queue, so the caller can show every workspace's step and loss live.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from dbooth.batch.task import BatchOptions, WorkspaceResult, process_workspace
from dbooth.util.errors import DboothError

POLL = 0.5  # seconds between looks at finished tasks and progress


def run_workspaces(workspaces: list[str | Path], *, steps: int | None = None, evaluate: bool = False,
          export: str | None = None, retries: int = 1, gpus_per_run: float | None = None, cpus_per_run: float = 1.0,
          address: str | None = None, num_cpus: int | None = None, on_update=None):
    """Prior, train (and eval, export) for every workspace as Ray tasks; returns each one's ``WorkspaceResult``.

    Without ``address`` a local Ray instance with ``num_cpus`` CPUs runs them; a failed workspace is retried
    ``retries`` times when a retry may help, and never stops the others.
    """
    if retries < 0:
        raise DboothError(f"batch --retries: {retries}; pass 0 or more")
    options = BatchOptions(steps=steps, evaluate=evaluate, export=export, retries=retries, gpus_per_run=gpus_per_run,
                           cpus_per_run=cpus_per_run)
    return run_batch([str(w) for w in workspaces], options, address=address, num_cpus=num_cpus, on_update=on_update)


def run_batch(paths: Sequence[str], options: BatchOptions, *, address: str | None = None,
              num_cpus: int | None = None, on_update: Callable[[WorkspaceResult], None] | None = None
              ) -> list[WorkspaceResult]:
    """Process every workspace in ``paths`` as a Ray task; returns their results in the order given.

    ``address``: an existing cluster (``ray://HEAD:10001`` through Ray Client, ``HEAD:6379`` or ``auto``
    from a node of it); without one a local Ray instance with ``num_cpus`` CPUs (default: all) is started
    and stopped. ``on_update(result)`` is called whenever a workspace's state or progress changes.
    """
    ray = _ray()
    if len(set(map(str, paths))) != len(paths):
        raise DboothError("batch: a workspace is listed twice; list each once (two runs would fight over its lock)")
    results = {str(p): WorkspaceResult(workspace=str(p)) for p in paths}
    notify = on_update or (lambda result: None)
    started_here = not ray.is_initialized()
    if started_here:
        _start(ray, address, num_cpus)
    try:
        options = _resolved(ray, options)
        from ray.util.queue import Queue

        events = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(_attempt).options(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run or 0,
                                            max_retries=0)
        where = {key: os.path.abspath(os.path.expanduser(key)) for key in results}  # as every node sees it
        pending = {}
        for key in results:
            pending[task.remote(key, where[key], options, 1, events)] = key
            notify(results[key])
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL)
            for key, event in _drain(events):
                _apply(results[key], event)
                notify(results[key])
            for ref in ready:
                key = pending.pop(ref)
                result = _collect(ray, ref, results[key])
                results[key] = result
                if result.status == "failed" and result.retriable and result.attempts <= options.retries:
                    result.status = "retrying"
                    pending[task.remote(key, where[key], options, result.attempts + 1, events)] = key
                notify(result)
        for key, event in _drain(events):  # a finished task's last progress may arrive after its result
            if results[key].status not in ("complete", "failed"):
                _apply(results[key], event)
        events.shutdown()
    finally:
        if started_here:
            ray.shutdown()
    return [results[str(p)] for p in paths]


def _attempt(key: str, path: str, options: BatchOptions, attempt: int, events) -> WorkspaceResult:
    """What a Ray task runs: one attempt at workspace ``path``, its progress sent into ``events`` under ``key``."""

    def send(event: dict) -> None:
        try:
            events.put_nowait((key, event))
        except Exception:  # progress is a courtesy; a full or lost queue must not fail the training
            pass

    result = process_workspace(path, options, attempt=attempt, send=send)
    result.workspace = key
    return result


def _collect(ray, ref, previous: WorkspaceResult) -> WorkspaceResult:
    """The task's result, or a retriable failure when Ray lost it (worker crash, node lost, killed for memory)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        previous.status, previous.retriable = "failed", True
        previous.error = f"{type(exc).__name__}: {first}"
        previous.attempts = max(previous.attempts, 1)
        return previous


def _drain(events) -> list:
    try:
        return events.get_nowait_batch(events.qsize())
    except Exception:
        return []


def _apply(result: WorkspaceResult, event: dict) -> None:
    if "status" in event:
        result.status, result.host = event["status"], event.get("host")
        result.attempts = event.get("attempts", result.attempts)
        result.error, result.progress = None, {}
    if "stage" in event:
        if event["stage"] != result.stage:
            result.progress = {}
        result.stage = event["stage"]
        result.progress.update({k: v for k, v in event.items() if k != "stage" and v is not None})


def _resolved(ray, options: BatchOptions) -> BatchOptions:
    """GPUs per run: 1 when the cluster has GPUs and none were asked for; a whole number above 1 trains
    data-parallel in that many processes."""
    from dataclasses import replace

    gpus = options.gpus_per_run
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if gpus > 1 and gpus != int(gpus):
        raise DboothError(f"batch --gpus-per-run: {gpus:g}; above 1 a run takes whole GPUs (2, 4, 8)")
    return replace(options, gpus_per_run=gpus, processes=max(options.processes, int(gpus) if gpus > 1 else 1))


def _start(ray, address: str | None, num_cpus: int | None) -> None:
    import logging

    settings = dict(logging_level=logging.ERROR, log_to_driver=False)  # the tasks report through the queue
    try:
        if address:
            ray.init(address=address, **settings)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **settings)
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DboothError(f"batch: cannot connect to {where} ({first}); check the address (ray://HEAD:10001 "
                          "for Ray Client) and that the cluster runs the same Ray and Python versions") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise DboothError("batch: Ray is not installed; `pip install 'dbooth[batch]'` (or `pip install ray`)") from None
    return ray

