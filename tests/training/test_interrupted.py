"""Ctrl-C during `train`: what was kept is said with the command that goes on, `--resume` continues the run with
its own settings (not the manifest's), and a plain `train` beside a resumable run says so before starting afresh."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from interrupt import InterruptAt
from recorder import Recorder
from run_cli import subprocess_env

from dbooth import api
from dbooth.workspace.folder import list_runs

RUN = {"train.max_steps": 6, "train.checkpoint_every": 2, "train.learning_rate": 3e-4, "prior.enabled": False}


def _interrupted(make_workspace, at: int = 5):
    ws = make_workspace(**{"train.max_steps": 20, "prior.enabled": False})  # the manifest's own budget: 20
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, RUN, reporter=InterruptAt(at))  # the command line's: 6 steps at 3e-4
    return ws


def test_resume_keeps_the_runs_own_steps_and_settings(make_workspace):
    ws = _interrupted(make_workspace)
    api.train(ws, resume=True)
    [run] = list_runs(ws)
    info = run.info()
    assert info["status"] == "complete" and info["steps"] == 6  # not the manifest's 20
    assert "learning_rate: 0.0003" in run.config_path.read_text()


def test_an_explicit_steps_extends_a_resumed_run(make_workspace):
    ws = _interrupted(make_workspace)
    api.train(ws, {"train.max_steps": 8}, resume=True)
    [run] = list_runs(ws)
    assert run.info()["steps"] == 8


def test_the_interruption_names_the_checkpoint_kept_and_the_command(make_workspace):
    ws = _interrupted(make_workspace)
    [run] = list_runs(ws)
    message = api.interrupted_train(ws)
    assert f"interrupted at step 5 of 6; run {run.id} keeps step-000004" in message
    assert "`dbooth train --resume` continues it to step 6" in message
    assert "-w /data/ws --upscaler" not in api.interrupted_train(ws, workspace_arg="/data/ws")
    assert "`dbooth train -w /data/ws --resume`" in api.interrupted_train(ws, workspace_arg="/data/ws")


def test_before_the_first_checkpoint_the_interruption_says_nothing_can_continue(make_workspace):
    ws = _interrupted(make_workspace, at=1)
    message = api.interrupted_train(ws)
    assert "before its first checkpoint (train.checkpoint_every: 0)" in message
    assert "cannot continue; `dbooth train` starts again" in message


def test_a_new_run_beside_a_resumable_one_says_how_to_continue_it(make_workspace):
    ws = _interrupted(make_workspace)
    recorder = Recorder()
    api.train(ws, {"train.max_steps": 2}, reporter=recorder)
    [old, new] = list_runs(ws)
    assert any(f"run {old.id} stopped at step 5 of 6 and can continue from step-000004 with `dbooth train --resume`"
               in w for w in recorder.warnings), recorder.warnings
    assert new.info()["status"] == "complete"


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_says_what_was_kept(make_workspace, tmp_path):
    """The real command and a real SIGINT (Typer alone would exit 130 without a word)."""
    ws = make_workspace(**{"train.max_steps": 100000, "train.checkpoint_every": 0, "prior.enabled": False})
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, "-m", "dbooth", "train", "-w", str(ws.root)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:  # progress lines once the steps run
        if line.startswith("training:"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "error: interrupted at step" in errors[0], rest
    assert "before its first checkpoint (train.checkpoint_every: 0)" in errors[0]
    assert "Traceback" not in rest
