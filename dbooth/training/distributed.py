"""One run, several processes: who is the main process, agreeing on shared choices, launching.

``accelerate launch`` (torchrun underneath) starts one process per device and tells each its rank
through the environment; reading that needs no torch, so the CLI and the workspace lock can ask it
before anything heavy is imported. The main process (rank 0) keeps the run's books: it takes the
workspace lock, creates the run folder and writes every file; the others train beside it.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

from dbooth.util.errors import DboothError
from dbooth.workspace.folder import Run

T = TypeVar("T")

PROCESS_OPTIONS = ("--processes", "--accelerate-config")  # dbooth train's options that only the launcher reads


def num_processes() -> int:
    """How many processes train this run (1 unless started by ``accelerate launch``/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_index() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return process_index() == 0


class RelayedError(DboothError):
    """The main process's error, as the other processes raise it: the main process has shown it already."""


class FollowerRun(Run):
    """The run as a process other than the main one sees it: it reads the run folder, writes nothing."""

    def write_info(self, info: dict) -> None:
        pass


def use_cpu() -> bool:
    """Train on the CPU when there is no accelerator: several CPU processes then talk over gloo."""
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def start() -> None:
    """Join the process group (a no-op for one process); must come before ``Accelerator()`` so that
    both agree on the CPU rule."""
    from accelerate import PartialState

    PartialState(cpu=use_cpu())


def decided_by_main(decide: Callable[[], T]) -> T:
    """``decide()`` on the main process, its result on every process.

    An error on the main process reaches the others as the same one-line ``DboothError`` instead
    of leaving them waiting for an answer that never comes.
    """
    if num_processes() == 1:
        return decide()
    from accelerate.utils import broadcast_object_list

    start()
    answer: list = [None]
    if is_main():
        try:
            answer = [("ok", decide())]
        except DboothError as exc:
            answer = [("error", str(exc))]
            broadcast_object_list(answer, from_process=0)
            raise
        except BaseException as exc:
            answer = [("error", f"the main process failed: {type(exc).__name__}: {exc}")]
            broadcast_object_list(answer, from_process=0)
            raise
    broadcast_object_list(answer, from_process=0)
    kind, value = answer[0]
    if kind == "error" and not is_main():
        raise RelayedError(value)
    return value


def strip_options(args: list[str], names: tuple[str, ...] = PROCESS_OPTIONS) -> list[str]:
    """``args`` without the options ``names`` (``--name VALUE`` or ``--name=VALUE``)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(name + "=") for name in names):
            continue
        out.append(arg)
    return out


def _check_processes(processes: int) -> None:
    if processes < 1:
        raise DboothError(f"train --processes: {processes} is not a process count; pass 1 or more")


def launch_arguments(processes: int, args: list[str], *, config_file: str | None = None) -> list[str]:
    """``accelerate launch``'s arguments that run ``dbooth ARGS`` in ``processes`` processes.

    ``--multi_gpu`` selects torchrun on one machine; without a GPU each process trains on the CPU and
    they average gradients over gloo (accelerate's own ``--cpu`` flag starts a single process unless
    MPI is set up, so it is not used).
    """
    _check_processes(processes)
    launch = []
    if config_file is not None:
        launch += ["--config_file", str(config_file)]
    else:
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launch += ["--multi_gpu"] if processes > 1 else []
    return launch + ["--num_processes", str(processes), "-m", "dbooth", *strip_options(args)]


def launch_command(processes: int, args: list[str], *, config_file: str | None = None) -> list[str]:
    """A command line that runs ``dbooth ARGS`` in ``processes`` processes from a process of its own
    (``dbooth batch`` runs it in a Ray task): dbooth again with ``--processes``, so ``relaunch`` starts them
    and a failure ends with the failing process's one-line error and exit code, as on the command line."""
    _check_processes(processes)
    config = ["--accelerate-config", str(config_file)] if config_file is not None else []
    return [sys.executable, "-m", "dbooth", *strip_options(args), "--processes", str(processes), *config]


def relaunch(processes: int, args: list[str], *, config_file: str | None = None) -> int:
    """Run ``dbooth ARGS`` under accelerate's launcher with ``processes`` processes; returns the exit code.

    The launcher runs in this process, so a failed run ends with the failing process's own one-line
    error and exit code, not torchrun's report of a failed child.
    """
    import logging
    import subprocess

    if config_file is not None and not os.path.isfile(config_file):
        raise DboothError(f"train --accelerate-config: {config_file} does not exist; pass an accelerate config file "
                          "(templates/accelerate/ has examples)")
    from accelerate.commands.launch import launch_command as launch, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # not quiet (-q): accelerate >= 1.16 then prints torchrun's failure report itself and exits 1, losing the
    # child's code; without it a failed child reaches the handlers below, as with earlier versions
    parsed = launch_command_parser().parse_args(launch_arguments(processes, args, config_file=config_file))
    try:
        launch(parsed)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except subprocess.CalledProcessError as exc:  # one process: accelerate's simple launcher
        return exc.returncode
    except KeyboardInterrupt:
        return 130
    return 0
