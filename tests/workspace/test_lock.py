"""One train/prior per workspace: a second gets one line naming the first; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from recorder import Recorder
from run_cli import run_dbooth, subprocess_env, user_error

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.workspace.lock import LOCK_NAME, held_by, holder, workspace_lock


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with workspace_lock(tmp_path, "train"):
        assert holder(tmp_path)["pid"] == os.getpid()
        with pytest.raises(DboothError) as err:
            with workspace_lock(tmp_path, "prior"):
                pass
        message = str(err.value)
        assert f"pid {os.getpid()}" in message and "`dbooth train`" in message and "already using it" in message
    with workspace_lock(tmp_path, "prior"):  # released on exit
        pass
    assert holder(tmp_path) is None


def test_a_lock_left_by_a_killed_process_is_taken_over(make_workspace):
    ws = make_workspace(**{"prior.num_class_images": 1, "prior.steps": 1})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (ws.root / LOCK_NAME).write_text(f'{{"pid": {pid}, "host": "here", "verb": "train", "since": 0}}\n')
    reporter = Recorder()
    api.prior(ws, reporter=reporter)
    assert any(f"pid {pid}" in w and "no longer running" in w for w in reporter.warnings), reporter.warnings
    assert len(list(ws.class_dir.glob("*.png"))) == 1


HOLD = """
import sys, time
from dbooth.workspace.lock import workspace_lock
with workspace_lock(sys.argv[1], "train"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_cli_second_train_names_the_other_process_while_status_still_answers(make_workspace):
    ws = make_workspace()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ws.root)], env=subprocess_env(), stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        message = user_error(run_dbooth(["train", "-w", str(ws.root), "--no-prior"], ws.root.parent))
        assert f"pid {proc.pid}" in message and "already using it" in message
        status = run_dbooth(["status", "-w", str(ws.root)], ws.root.parent)
        assert status.returncode == 0, status.stderr
        assert "busy:" in status.stdout and f"pid {proc.pid}" in status.stdout
    finally:
        proc.kill()
        proc.wait()
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())  # the refused train left nothing behind


def test_held_by_names_the_holder_only_while_it_holds(tmp_path):
    assert held_by(tmp_path) is None  # no lock file yet
    with workspace_lock(tmp_path, "train"):
        assert held_by(tmp_path)["verb"] == "train" and held_by(tmp_path)["pid"] == os.getpid()
    assert held_by(tmp_path) is None
    with workspace_lock(tmp_path, "prior"):  # held_by took nothing
        pass


def test_wait_takes_the_lock_once_the_holder_lets_go(tmp_path):
    import threading
    import time

    taken, release = threading.Event(), threading.Event()

    def hold():
        with workspace_lock(tmp_path, "train"):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(10)
    threading.Timer(0.5, release.set).start()
    seen = []
    began = time.monotonic()
    with workspace_lock(tmp_path, "prior", wait=10, on_wait=seen.append, poll=0.05):
        assert holder(tmp_path)["verb"] == "prior"
    thread.join()
    assert 0.4 < time.monotonic() - began < 5
    assert len(seen) == 1 and seen[0]["verb"] == "train"  # told once, not every poll


def test_wait_gives_up_after_its_time(tmp_path):
    with workspace_lock(tmp_path, "train"):
        with pytest.raises(DboothError, match="after waiting 0.2 s"):
            with workspace_lock(tmp_path, "prior", wait=0.2, poll=0.05):
                pass
