"""One workspace's batch work without Ray: a run another node left unfinished is resumed, errors come back."""

from __future__ import annotations

import pytest

from dbooth import api
from dbooth.batch.task import BatchOptions, ProgressReporter, process_workspace
from dbooth.util.reporting import Reporter
from dbooth.workspace.folder import find_run, list_runs


class StopAt(Reporter):
    """Ctrl-C (or a lost node) during the given step."""

    def __init__(self, step: int):
        self.step = step

    def advance(self, completed: int, **fields) -> None:
        if completed == self.step:
            raise KeyboardInterrupt


def test_an_unfinished_run_is_resumed_where_it_stopped(make_workspace):
    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2})
    api.prior(ws)
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=StopAt(3))
    stopped = find_run(ws, complete=False)
    events = []
    result = process_workspace(str(ws.root), BatchOptions(), attempt=2, send=events.append)
    assert result.status == "complete" and result.resumed and result.attempts == 2
    assert result.run_id == stopped.id and result.steps == 4 and len(list_runs(ws)) == 1
    assert result.final_loss == stopped.info()["final_loss"] and result.error is None
    stages = [e["stage"] for e in events if "stage" in e]
    assert stages[0] == "prior" and "train" in stages
    assert {"stage": "train", "done": 4, "total": 4} == {k: v for k, v in events[-1].items() if k != "loss"}


def test_a_workspace_error_comes_back_as_one_line_and_is_not_retried(make_workspace):
    ws = make_workspace(**{"prior.enabled": False})
    for photo in ws.instance_dir.iterdir():
        photo.unlink()
    result = process_workspace(str(ws.root), BatchOptions())
    assert result.status == "failed" and result.stage == "train" and not result.retriable
    assert "no instance images" in result.error and "\n" not in result.error
    assert result.run_id is None and list_runs(ws) == []


def test_progress_is_sent_at_the_start_the_end_and_every_so_often(monkeypatch):
    import dbooth.batch.task as task

    sent, clock = [], [0.0]
    monkeypatch.setattr(task.time, "monotonic", lambda: clock[0])
    reporter = ProgressReporter(sent.append, "train", every=10.0)
    reporter.start("training", total=3)
    reporter.advance(1, loss=0.5)  # too soon: not sent
    clock[0] = 11.0
    reporter.advance(2, loss=0.4)
    reporter.advance(3, loss=0.3)  # the last step always
    assert sent == [{"stage": "train", "done": 0, "total": 3}, {"stage": "train", "done": 2, "total": 3, "loss": 0.4},
                    {"stage": "train", "done": 3, "total": 3, "loss": 0.3}]
