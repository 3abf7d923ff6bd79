"""A batch's plain lines (a pipe or log file) and live table (a terminal)."""

from __future__ import annotations

import io

from rich.console import Console

from dbooth.batch.task import WorkspaceResult
from dbooth.cli.batch_view import BatchView, line


def test_plain_lines_say_each_change_of_state_once():
    out = io.StringIO()
    with BatchView(Console(file=out, width=200)) as view:
        r = WorkspaceResult("ws-a")
        view.update(r)
        r.status, r.stage, r.host, r.attempts = "running", "train", "node-1", 1
        r.progress = {"done": 1, "total": 4}
        view.update(r)
        r.progress = {"done": 2, "total": 4}
        view.update(r)  # progress alone: no new line
        r.status, r.error = "retrying", "RuntimeError: CUDA out of memory"
        view.update(r)
        r.status, r.stage, r.error, r.attempts, r.run_id = "complete", None, None, 2, "20260101-lora"
        r.resumed, r.steps, r.final_loss, r.seconds = True, 4, 0.1234, 12.0
        view.update(r)
    assert out.getvalue().splitlines() == [
        "ws-a: queued",
        "ws-a: train on node-1",
        "ws-a: retrying after attempt 1 (train): RuntimeError: CUDA out of memory",
        "ws-a: complete, run 20260101-lora (resumed), 4 steps, loss 0.1234, 12s on node-1",
    ]


def test_the_table_shows_every_workspace_with_its_figures_or_error():
    done = WorkspaceResult("ws-a", status="complete", run_id="r1", steps=4, final_loss=0.5, seconds=3.0, host="n1")
    failed = WorkspaceResult("ws-b", status="failed", stage="train", attempts=1, error="no instance images in x")
    running = WorkspaceResult("ws-c", status="running", stage="train", progress={"done": 2, "total": 8, "loss": 0.7})
    view = BatchView(Console(file=io.StringIO()))
    for r in (done, failed, running):
        view.rows[r.workspace] = r
    out = io.StringIO()
    Console(file=out, width=200).print(view.table())
    text = out.getvalue()
    assert "r1" in text and "0.5000" in text and "no instance images in x" in text and "train 2/8" in text
    assert "0.7000" in text  # a running workspace shows its latest loss
    assert line(failed) == "ws-b: failed after attempt 1 (train): no instance images in x"
