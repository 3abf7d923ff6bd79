"""Time another training script the way the bench times dbooth: ``python refrunner.py OUT.json SCRIPT ARGS...``.

Standalone (stdlib + torch) so it runs in any environment. A global optimizer-step hook takes a
timestamp and the peak RSS / CUDA memory after every optimizer step; after ``--max_train_steps``
steps it writes OUT.json and exits, so the script's final save is not measured (as for dbooth).
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
import time


def main() -> None:
    out, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    total = int(args[args.index("--max_train_steps") + 1])
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    cuda = torch.cuda.is_available()
    began = time.perf_counter()
    times: list[float] = []
    memory: list[float] = []

    def after_step(optimizer, *_):
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        memory.append(torch.cuda.max_memory_allocated() / 2**20 if cuda
                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if len(times) >= total:
            with open(out, "w") as f:
                json.dump({"times": times, "memory": memory, "began": began,
                           "torch": torch.__version__, "cuda": cuda}, f)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    register_optimizer_step_post_hook(after_step)
    sys.argv = [script] + args
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
