"""One workspace's work in a batch: prior, train (resuming an unfinished run), and optionally eval and export.

Plain dbooth, no Ray: a Ray task calls ``process_workspace`` on whichever node it lands, and the same
function runs in a test or a loop of one's own. The workspace on shared storage is the unit of work:
a run that a lost node left unfinished is resumed from its last checkpoint by the next attempt, wherever
that runs. Errors come back in the result, never as an exception, so one workspace never stops another.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from dbooth.util.errors import DboothError
from dbooth.util.reporting import Reporter

STAGES = ("prior", "train", "eval", "export")


@dataclass(frozen=True)
class BatchOptions:
    """What every workspace of a batch runs; the manifests decide everything else."""

    steps: int | None = None  # train.max_steps for every workspace (None: each manifest's own)
    evaluate: bool = False  # score the run on DreamBench's metrics after training (RUN/eval.json)
    export: str | None = None  # export the run in this format after training (see `dbooth export --help`)
    retries: int = 1  # further attempts after a failure that may pass on retry (a crash, a lost node)
    gpus_per_run: float | None = None  # GPUs Ray reserves per workspace (None: 1 when the cluster has GPUs, else 0)
    cpus_per_run: float = 1.0  # CPUs Ray reserves per workspace
    processes: int = 1  # data-parallel processes per run (`accelerate launch`); from a whole gpus_per_run above 1


@dataclass
class WorkspaceResult:
    """What came of one workspace: the figures of a finished run, or the one line of the error."""

    workspace: str
    status: str = "queued"  # queued, running, complete, failed (retrying while attempts remain)
    stage: str | None = None  # the stage running or failed
    attempts: int = 0
    host: str | None = None
    run_id: str | None = None
    resumed: bool = False
    steps: int | None = None
    final_loss: float | None = None
    train_seconds: float | None = None
    seconds: float | None = None  # the whole attempt: prior, train, eval, export
    eval: dict | None = None  # the final weights' metrics
    export: str | None = None  # where the export was written
    error: str | None = None
    retriable: bool = False  # the failure was not a DboothError (a crash, out of memory, a lost node)
    progress: dict = field(default_factory=dict)  # the stage's latest progress (done, total, loss)


class ProgressReporter(Reporter):
    """Passes a stage's progress to ``send`` at most every ``every`` seconds (and at the start and end)."""

    def __init__(self, send: Callable[[dict], None], stage: str, every: float = 1.0):
        self.send, self.stage, self.every = send, stage, every
        self.total, self.last = None, 0.0

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self.total, self.last = total, time.monotonic()
        self.send({"stage": self.stage, "done": completed, "total": total})

    def advance(self, completed: int, **fields) -> None:
        if time.monotonic() - self.last >= self.every or completed == self.total:
            self.last = time.monotonic()
            loss = fields.get("loss")
            self.send({"stage": self.stage, "done": completed, "total": self.total,
                       **({"loss": float(loss)} if loss is not None else {})})


def process_workspace(path: str, options: BatchOptions, *, attempt: int = 1,
                      send: Callable[[dict], None] | None = None) -> WorkspaceResult:
    """Run prior, train (resuming an unfinished run with a checkpoint), eval and export for one workspace."""
    send = send or (lambda event: None)
    result = WorkspaceResult(workspace=path, status="running", attempts=attempt, host=socket.gethostname())
    send({"status": "running", "host": result.host, "attempts": attempt})
    began = time.monotonic()
    try:
        from dbooth import api
        from dbooth.workspace.folder import open_workspace

        ws = open_workspace(path)
        manifest = ws.manifest()
        if manifest.prior.enabled:
            _stage(result, "prior", send)
            api.prior(ws, reporter=ProgressReporter(send, "prior"))
        _stage(result, "train", send)
        result.resumed = _resumable(ws)
        overrides = {"train.max_steps": options.steps}
        if options.processes > 1:
            trained = _train_launched(ws, options, result.resumed)
        else:
            trained = api.train(ws, overrides, resume=result.resumed, reporter=ProgressReporter(send, "train"))
        run = trained.run
        info = run.info()
        result.run_id, result.steps = run.id, info.get("steps")
        result.final_loss, result.train_seconds = info.get("final_loss"), info.get("train_seconds")
        if options.evaluate:
            _stage(result, "eval", send)
            evaluated = api.evaluate(ws, run_id=run.id, reporter=ProgressReporter(send, "eval"))
            result.eval = evaluated.data["metrics"].get("final")
        if options.export:
            _stage(result, "export", send)
            result.export = str(api.export(ws, options.export, run_id=run.id, force=True))
        result.status, result.stage = "complete", None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        result.status, result.error = "failed", _one_line(exc)
        result.retriable = not isinstance(exc, DboothError)
    result.seconds = round(time.monotonic() - began, 2)
    return result


def _stage(result: WorkspaceResult, stage: str, send) -> None:
    result.stage = stage
    send({"stage": stage, "done": None, "total": None})


def _resumable(ws) -> bool:
    """An unfinished run with a checkpoint: the last attempt (on this node or another) got that far."""
    from dbooth.workspace.folder import list_runs

    return any(not r.complete and r.checkpoints() for r in list_runs(ws))


@dataclass
class _Trained:
    run: object


def _train_launched(ws, options: BatchOptions, resume: bool) -> _Trained:
    """Train in ``options.processes`` data-parallel processes (on the GPUs Ray gave this task)."""
    import subprocess

    from dbooth.training.distributed import launch_command
    from dbooth.workspace.folder import find_run

    args = ["train", "-w", str(ws.root)] + (["--steps", str(options.steps)] if options.steps else [])
    args += ["--resume"] if resume else []
    done = subprocess.run(launch_command(options.processes, args), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.startswith("error:")]
        if lines:
            raise DboothError(lines[-1].removeprefix("error:").strip())
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"`dbooth train --processes {options.processes}` exited with {done.returncode}: {tail}")
    return _Trained(find_run(ws))


def _one_line(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0][:300]
    return first if isinstance(exc, DboothError) else f"{type(exc).__name__}: {first}".rstrip(": ")

