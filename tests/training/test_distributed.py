"""Who keeps a multi-process run's books, and the launcher command ``dbooth train --processes N`` runs."""

from __future__ import annotations

import sys

import pytest

from dbooth.training import distributed
from dbooth.util.errors import DboothError
from dbooth.workspace.folder import Run


def test_one_process_is_the_main_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.num_processes() == 1 and distributed.is_main()
    assert distributed.decided_by_main(lambda: "run-1") == "run-1"  # no process group needed


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert distributed.num_processes() == 4 and distributed.process_index() == 2 and not distributed.is_main()


def test_a_follower_run_writes_no_books(tmp_path):
    run = distributed.FollowerRun(tmp_path)
    run.write_info({"status": "complete"})
    assert not run.info_path.exists()
    Run(tmp_path).write_info({"status": "complete"})
    assert run.info()["status"] == "complete"  # it reads what the main process wrote


def test_the_launcher_runs_dbooth_under_accelerate_without_the_process_options():
    args = ["train", "-w", "ws", "--processes", "2", "--steps", "5", "--accelerate-config=x.yaml"]
    launch = distributed.launch_arguments(2, args)
    assert "--multi_gpu" in launch and launch[launch.index("--num_processes") + 1] == "2"
    assert "-q" not in launch  # quiet, accelerate >= 1.16 replaces a failed child's exit code with its own report
    assert launch[launch.index("-m"):] == ["-m", "dbooth", "train", "-w", "ws", "--steps", "5"]
    with_config = distributed.launch_arguments(4, args, config_file="zero2.yaml")
    assert with_config[with_config.index("--config_file") + 1] == "zero2.yaml" and "--multi_gpu" not in with_config
    with pytest.raises(DboothError, match="process count"):
        distributed.launch_arguments(0, args)


def test_a_launch_from_another_process_is_dbooth_train_with_its_process_options():
    """``dbooth batch`` runs this command: the same path as the command line, so the same exit codes."""
    args = ["train", "-w", "ws", "--processes", "3", "--steps", "5", "--accelerate-config=x.yaml"]
    assert distributed.launch_command(2, args) == [sys.executable, "-m", "dbooth", "train", "-w", "ws", "--steps", "5",
                                                    "--processes", "2"]
    assert distributed.launch_command(4, args, config_file="zero2.yaml")[-4:] == [
        "--processes", "4", "--accelerate-config", "zero2.yaml"]
    with pytest.raises(DboothError, match="process count"):
        distributed.launch_command(0, args)


def test_a_missing_accelerate_config_is_one_line(tmp_path):
    with pytest.raises(DboothError, match="does not exist"):
        distributed.relaunch(2, ["train"], config_file=str(tmp_path / "nope.yaml"))


@pytest.mark.slow
def test_a_failed_launch_ends_with_the_main_processes_one_line_and_exit_code(make_workspace):
    """The workspace is busy: the main process says so once; no launcher report or traceback follows."""
    import os
    import subprocess
    from pathlib import Path

    import dbooth
    from dbooth.workspace.lock import workspace_lock

    ws = make_workspace(**{"prior.enabled": False})
    paths = [str(Path(dbooth.__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(p for p in paths if p))
    with workspace_lock(ws.root, "prior"):  # the command `dbooth batch` runs is `dbooth train --processes 2`
        done = subprocess.run(distributed.launch_command(2, ["train", "-w", str(ws.root)]),
                              env=env, capture_output=True, text=True, timeout=300)
    out = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2, out
    assert len(out) == 1 and out[0].startswith("error: workspace") and "already using it" in out[0]
