"""A local Ray instance with 2 CPUs runs tiny workspaces: the good ones finish, a broken one reports its error.

Ray must start here: a test that cannot start it fails (it is not skipped), since `dbooth batch`
would not work either.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api
from dbooth.batch import run_workspaces
from dbooth.workspace.folder import find_run, list_runs

pytestmark = pytest.mark.slow

SETTINGS = {"train.method": "lora", "train.max_steps": 3, "prior.num_class_images": 2, "prior.batch_size": 2}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_base):
    from drawn import draw_photos

    root = tmp_path_factory.mktemp("batch")
    photos = draw_photos(root / "photos")
    from dbooth.workspace.config import apply_overrides, write_manifest

    def workspace(name, **extra):
        ws = api.init(root / name, "dog", base_model=str(tiny_base), images=photos)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {
            **SETTINGS, "train.checkpoint_every": 0, "train.validation_every": 0, "prior.steps": 2, **extra}))
        return ws

    good = [workspace("corgi"), workspace("tabby", **{"train.seed": 5})]
    broken = workspace("no-photos")
    for photo in broken.instance_dir.iterdir():
        photo.unlink()
    flaky = workspace("class-is-a-file")  # an OSError: the kind of failure a retry may cure
    shutil.rmtree(flaky.class_dir)
    flaky.class_dir.write_text("not a folder")
    twin = workspace("corgi-twin")  # trained directly, to compare with the batch's corgi
    updates = []
    order = [good[0].root, broken.root, good[1].root, flaky.root]
    results = run_workspaces(order, retries=1, num_cpus=2, on_update=lambda r: updates.append(
        (r.workspace, r.status, r.stage, dict(r.progress))))
    return {"good": good, "broken": broken, "flaky": flaky, "twin": twin, "results": results, "updates": updates}


def test_the_good_workspaces_finish_beside_a_broken_one(batch):
    corgi, broken, tabby, flaky = batch["results"]
    for result, ws in ((corgi, batch["good"][0]), (tabby, batch["good"][1])):
        assert result.workspace == str(ws.root)
        assert result.status == "complete" and result.error is None and result.attempts == 1
        assert result.run_id == find_run(ws).id and result.steps == 3 and result.final_loss > 0
        assert len(list(ws.class_dir.glob("prior-*.png"))) == 2  # the prior stage ran
        assert find_run(ws).lora_file.is_file()

    assert broken.status == "failed" and broken.stage == "train" and broken.attempts == 1  # not retried
    assert "no instance images" in broken.error and list_runs(batch["broken"]) == []

    assert flaky.status == "failed" and flaky.attempts == 2 and flaky.retriable  # retried once, as asked
    assert flaky.error.startswith("FileExistsError")


def test_a_workspace_trains_in_the_batch_as_it_trains_alone(batch):
    api.prior(batch["twin"])
    alone = api.train(batch["twin"]).run
    corgi = find_run(batch["good"][0])
    a, b = load_file(alone.lora_file), load_file(corgi.lora_file)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


def test_progress_arrives_while_the_workspaces_run(batch):
    corgi = str(batch["good"][0].root)
    seen = [u for u in batch["updates"] if u[0] == corgi]
    assert seen[0][1] == "queued" and seen[-1][1] == "complete"
    assert any(status == "running" and stage == "train" and progress.get("total") == 3
               for _, status, stage, progress in seen)
    flaky = [u[1] for u in batch["updates"] if u[0] == str(batch["flaky"].root)]
    assert "retrying" in flaky and flaky[-1] == "failed"
