"""``dbooth eval`` end to end on the tiny model, judged by tiny random DINO and CLIP encoders."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import dbooth
from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.eval import metrics
from dbooth.eval.encoders import load_dino
from dbooth.eval.evaluate import METRICS, sample_at_seeds
from tiny_encoders import save_tiny_clip, save_tiny_dino
from dbooth.generate.sample import load_for_sampling
from dbooth.generate.schedulers import set_scheduler


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    return str(save_tiny_dino(root / "dino")), str(save_tiny_clip(root / "clip"))


def m_res(ws) -> int:
    return ws.manifest().train.resolution


def _env() -> dict:
    paths = [str(Path(dbooth.__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", NO_COLOR="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in paths if p))


@pytest.mark.slow
def test_eval_scores_base_checkpoints_and_final_and_picks_one(make_workspace, judges):
    dino_dir, clip_dir = judges
    ws = make_workspace("judged", **{
        "prior.enabled": False, "train.max_steps": 4, "train.checkpoint_every": 2, "train.learning_rate": 1e-3,
        "eval.dino": dino_dir, "eval.clip": clip_dir, "eval.num_prompts": 2, "eval.images_per_prompt": 2,
        "eval.class_images": 2, "eval.prompt_fidelity_margin": 1.0})
    run = api.train(ws).run
    (run.dir / "report.html").write_text("<html><body><h1>training</h1></body></html>")
    out = subprocess.run([sys.executable, "-m", "dbooth", "eval", "-w", str(ws.root), "--checkpoints"],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    data = json.loads((run.dir / "eval.json").read_text())
    assert list(data["metrics"]) == ["base", "step-000002", "final"]
    assert data["prompt_list"] == ["a sks dog in the jungle", "a sks dog in the snow"]
    assert data["prompts"] == "dreambench:live_subjects"
    for scores in data["metrics"].values():
        assert sorted(scores) == sorted(METRICS)
        assert all(-1 <= v <= 2 for v in scores.values())
    assert data["metrics"]["final"] != data["metrics"]["base"]
    # the margin lets every candidate pass, so the rule comes down to the highest DINO
    candidates = {k: v["dino"] for k, v in data["metrics"].items() if k != "base"}
    assert data["best"]["checkpoint"] == max(candidates, key=candidates.get)
    assert run.info()["best_checkpoint"] == data["best"]["checkpoint"]
    assert "best" in out.stdout + out.stderr and "dino" in out.stdout + out.stderr

    # report.html, the run page: rebuilt whole from the files, with the section, each figure against the step
    # (a point per scored model in each panel) and the scored samples
    page = (run.dir / "report.html").read_text()
    assert "<h1>training</h1>" not in page and page.count('id="evaluation"') == 1
    points = re.findall(r'<circle [^>]*data-name="([^"]+)"', page)
    assert points and set(points) == set(data["metrics"]) and len(points) % len(data["metrics"]) == 0
    shown = ["base"] + ([data["best"]["checkpoint"]] if data["best"]["checkpoint"] != "final" else []) + ["final"]
    srcs = [s for s in re.findall(r'<img src="([^"]+)"', page) if s.startswith("eval/")]
    assert len(srcs) == len(shown) * (len(data["prompt_list"]) + 1)
    assert all((run.dir / s).is_file() for s in srcs)
    assert sorted(p.name for p in (run.dir / "eval").iterdir()) == sorted(Path(s).name for s in srcs)
    assert Image.open(run.dir / srcs[0]).size == (2 * m_res(ws), m_res(ws))  # one row of the 2 samples scored

    # the base model's DINO, computed directly from the same seeds, is what eval.json says
    m = ws.manifest()
    pipe = load_for_sampling(m.base_model, None)
    set_scheduler(pipe, m.sample.scheduler)
    images = [im for p in data["prompt_list"] for im in sample_at_seeds(pipe, p, 2, m.eval.seed, m)]
    kept = Image.open(run.dir / "eval" / "grid-01-base.png")
    assert list(kept.crop((0, 0, *images[0].size)).getdata()) == list(images[0].getdata())
    dino = load_dino(dino_dir)
    photos = [Image.open(p).convert("RGB") for p in sorted(ws.instance_dir.iterdir())]
    direct = metrics.dino_score(dino.embed(images), dino.embed(photos))
    assert data["metrics"]["base"]["dino"] == pytest.approx(direct, abs=1e-4)

    status = api.open_workspace(ws.root)
    from dbooth.workspace.status import workspace_status

    assert workspace_status(status).runs[-1].best_checkpoint == data["best"]["checkpoint"]


@pytest.mark.slow
def test_eval_with_validation_prompts_and_no_checkpoints_keeps_run_json(make_workspace, judges):
    dino_dir, clip_dir = judges
    ws = make_workspace("plain", **{"prior.enabled": False, "train.max_steps": 1, "eval.dino": dino_dir,
                                    "eval.clip": clip_dir, "eval.class_images": 1})
    run = api.train(ws).run
    before = run.info()
    result = api.evaluate(ws, prompts="validation", images_per_prompt=1)
    assert result.data["prompt_list"] == ["a sks dog on the beach"]
    assert list(result.data["metrics"]) == ["base", "final"] and "best" not in result.data
    assert run.info() == before
    assert result.data["metrics"]["base"]["div_dino"] is None  # one image per prompt has no pairs
    json.loads((run.dir / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in eval.json"))
    page = result.report.read_text()
    # no fidelity curve without checkpoints; the training section above it holds the run's loss curve
    assert 'class="curve"' not in page and page.index('class="loss-curve"') < page.index('id="evaluation"')
    assert len(re.findall(r'<img src="', page)) == 2 * 2  # base and final: prompt + class


def test_eval_without_the_encoders_says_what_to_download(make_workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ws = make_workspace("blind", **{"prior.enabled": False, "train.max_steps": 1})
    api.train(ws)
    with pytest.raises(DboothError, match="huggingface-cli download facebook/dino-vits16"):
        api.evaluate(ws)


def test_on_the_builtin_model_the_oracle_recognises_the_subject_and_judges_too(tmp_path):
    from dbooth.plugins import judge_for as _builtin_oracle

    ws = api.init(tmp_path / "heart", None, example="striped_heart")
    photos = [Image.open(p).convert("RGB") for p in sorted(ws.instance_dir.glob("*.png"))]
    assert _builtin_oracle(str(ws.manifest().base_model).replace("builtin:", "/not-builtin/"), photos) is None
    judge = _builtin_oracle(ws.manifest().base_model, photos)
    assert judge.subject == "striped_heart"
    scores = judge.score({"p": photos[:2], "q": photos[2:4]}, photos[:2])
    assert scores["subject_fidelity"] == pytest.approx(judge.oracle.subject_fidelity(photos[:4], "striped_heart"))
    assert scores["pres"] >= 0.5  # the photos themselves are the subject: all drift, no prior kept
    assert 0 <= scores["div"] <= 1
