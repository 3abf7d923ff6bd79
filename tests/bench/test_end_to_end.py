"""``dbooth bench --e2e``: whole training runs, their split, and the two checkpoint policies side by side."""

from __future__ import annotations

import json

import pytest

from dbooth.bench import measure, worker
from dbooth.bench.configs import CONFIGS
from dbooth.workspace.folder import has_resume_state

pytestmark = pytest.mark.slow

SMALL = {"train.max_steps": 5, "train.checkpoint_every": 2, "train.keep_checkpoints": 2, "train.validation_every": 0,
         "prior.num_class_images": 2}


@pytest.fixture
def e2e_ws(tmp_path, tiny_base):
    return measure.make_workspace(tmp_path / "e2e", str(tiny_base), {**CONFIGS["tiny"].overrides, **SMALL},
                                  num_instance=2, num_class=None, fixed=False)


def test_the_workspace_keeps_its_defaults(e2e_ws):
    m = e2e_ws.manifest()
    assert (m.train.checkpoint_every, m.train.max_steps) == (2, 5)  # not the step bench's checkpoint_every 0
    from PIL import Image

    squares = [p for p in e2e_ws.class_dir.iterdir() if Image.open(p).size == (32, 32)]
    assert len(squares) == m.prior.num_class_images == 2  # as many as the manifest asks for (+ bucket shapes)


def test_previous_policy_keeps_every_optimizer_state_and_current_only_the_newest(e2e_ws):
    from dbooth.training.checkpointing import CheckpointWriter

    save = CheckpointWriter.save
    runs = {p: worker.run_end_to_end_spec({"workspace": str(e2e_ws.root), "policy": p})
            for p in ("current", "previous")}
    assert CheckpointWriter.save is save  # the comparison's patch is undone
    for policy, res in runs.items():
        assert res["checkpoints"] == ["step-000002", "step-000004"] and res["steps"] == 5, policy
        assert res["timings"]["checkpoints"] >= 0 and res["timings"]["total"] > res["timings"]["steps"] > 0
    runs_dir = e2e_ws.runs_dir
    current, previous = sorted(runs_dir.iterdir())  # run folders in creation order
    folders = {"current": sorted((current / "checkpoints").iterdir()),
               "previous": sorted((previous / "checkpoints").iterdir())}
    assert [has_resume_state(f) for f in folders["current"]] == [False, True]
    assert [has_resume_state(f) for f in folders["previous"]] == [True, True]
    weights = (folders["current"][0] / "trainable_0.safetensors").stat().st_size
    # previous: 2 x (weights + AdamW's two moments); current: 2 x weights + one pair of moments
    assert runs["previous"]["checkpoint_bytes"] == pytest.approx(6 * weights, rel=0.05)
    assert runs["current"]["checkpoint_bytes"] == pytest.approx(4 * weights, rel=0.05)
    # the background write happened beside the steps in the current policy only
    assert runs["current"]["timings"]["checkpoint_writes_background"] > 0


def test_cli_bench_e2e_reports_the_split_per_policy(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dbooth.cli.app import app

    monkeypatch.setenv("DBOOTH_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "e2e.json"
    sets = [x for k, v in {**SMALL, "train.max_steps": 4, "train.validation_every": 2, "sample.steps": 2}.items()
            for x in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(app, ["bench", "--config", "tiny", "--e2e", "--threads", "1", *sets, "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["mode"] == "e2e" and [r["label"] for r in report["rows"]] == ["current", "previous"]
    s = report["settings"]
    assert (s["max_steps"], s["checkpoint_every"], s["validation_every"], s["num_class_images"]) == (4, 2, 2, 2)
    for row in report["rows"]:
        t = row["timings"]
        assert row["wall_seconds"] > t["total"] > 0  # the process also imports and starts up
        assert t["validation"] > 0 and t["load"] > 0 and t["save"] > 0
        assert row["checkpoints"] == ["step-000002"]
    current, previous = report["rows"]
    # one checkpoint: it is the newest, so both policies keep its optimizer state
    assert current["checkpoint_bytes"] == pytest.approx(previous["checkpoint_bytes"], rel=0.01)
    assert "end to end" in result.output and "current" in result.output and "previous" in result.output


def test_as_many_class_images_as_a_default_manifest_asks_for_can_be_drawn(tmp_path):
    paths = measure.draw_images(tmp_path, 200, 64, subject=False, prefix="class-")
    assert len(paths) == 200 and len({p.read_bytes() for p in paths}) > 100
