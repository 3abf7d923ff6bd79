"""``--run RUN@best`` / ``RUN@STEP``: sampling a chosen checkpoint."""

import numpy as np
import pytest
from PIL import Image

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.workspace.folder import checkpoint_at, find_run_at, split_run_ref


def test_split_run_ref():
    assert split_run_ref("20250101-full@best") == ("20250101-full", "best")
    assert split_run_ref("@400") == (None, "400")
    assert split_run_ref("20250101-full") == ("20250101-full", None)
    assert split_run_ref(None) == (None, None)


@pytest.mark.slow
def test_run_at_best_and_at_step_sample_that_checkpoint(make_workspace):
    ws = make_workspace("refs", **{"prior.enabled": False, "train.max_steps": 4, "train.checkpoint_every": 2,
                                   "train.learning_rate": 1e-3, "sample.num_images": 1})
    run = api.train(ws).run
    (step2,) = run.checkpoints()
    with pytest.raises(DboothError, match="no best checkpoint chosen yet; .*dbooth eval"):
        find_run_at(ws, f"{run.id}@best")
    with pytest.raises(DboothError, match=r"no checkpoint '3' \(saved steps: 2\)"):
        find_run_at(ws, f"{run.id}@3")
    assert find_run_at(ws, f"{run.id}@2") == (run, step2)
    assert find_run_at(ws, f"{run.id}@final") == (run, None)
    run.write_info({**run.info(), "best_checkpoint": "step-000002"})
    assert checkpoint_at(run, "best") == step2 and find_run_at(ws, "@best") == (run, step2)

    at_step = api.sample(ws, "a sks dog", run_id=f"{run.id}@best")
    final = api.sample(ws, "a sks dog", run_id=run.id)
    assert at_step.folder.parent.name == f"{run.id}@step-000002"
    a, b = (np.asarray(Image.open(r.paths[0]), dtype=np.int16) for r in (at_step, final))
    assert np.abs(a - b).max() > 1  # step 2 is not the final model

    exported = api.export(ws, "diffusers", run_id=f"{run.id}@best")  # tests/export/test_export_checkpoint.py
    assert exported.name == f"refs-{run.id.removesuffix('-' + run.info()['method'])}@2"  # workspace, run start, step
    run.write_info({**run.info(), "best_checkpoint": "final"})
    assert find_run_at(ws, f"{run.id}@best") == (run, None)
