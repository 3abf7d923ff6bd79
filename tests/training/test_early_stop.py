"""train.stop_when: the stopping rule on injected scores, the up-front checks, and one real run that stops."""

from __future__ import annotations

import pytest

from dbooth import api
from dbooth.workspace.config import apply_overrides
from dbooth.util.errors import DboothError
from tiny_encoders import save_tiny_clip, save_tiny_dino
from dbooth.training.early_stop import check_stop_when, decide, replay

KEYS = ("dino", "clip_t", "pres")
BASE = {"dino": 0.10, "clip_t": 0.30, "pres": 0.20}


def _scores(*rows):
    """(dino, clip_t, pres) per checkpoint, named step-000001, step-000002, ..."""
    return {f"step-{i + 1:06d}": dict(zip(KEYS, row)) for i, row in enumerate(rows)}


def _decide(scores, patience=2, prior=False):
    return decide(scores, BASE, patience=patience, prompt_margin=0.02, pres_margin=0.1, prior=prior, keys=KEYS)


def _stopping_workspace(make_workspace, tmp_path, name: str, **settings):
    """A workspace with stop_when on, tiny local judges, no prior, one sample per prompt; every checkpoint is
    eligible (CLIP-T cosines lie in [-1, 1], the margin is 2)."""
    dino, clip = save_tiny_dino(tmp_path / "dino"), save_tiny_clip(tmp_path / "clip")
    return make_workspace(name, **{
        "prior.enabled": False, "eval.dino": str(dino), "eval.clip": str(clip), "train.stop_when.enabled": True,
        "train.stop_when.images_per_prompt": 1, "train.stop_when.prompt_fidelity_margin": 2.0, **settings})


def test_it_stops_once_patience_checkpoints_bring_no_better_pick():
    rising = [(0.2, 0.3, 0.2), (0.4, 0.3, 0.2), (0.6, 0.3, 0.2)]
    assert not _decide(_scores(*rising)).stop
    after_peak = _scores(*rising, (0.5, 0.3, 0.2))
    assert _decide(after_peak) == _decide(after_peak)  # a pure function
    assert not _decide(after_peak).stop and _decide(after_peak).best == "step-000003"
    stopped = _decide(_scores(*rising, (0.5, 0.3, 0.2), (0.55, 0.3, 0.2)))
    assert stopped.stop and stopped.best == "step-000003"
    assert "no better checkpoint in the 2 after step-000003 (dino 0.600" in stopped.reason
    assert _decide(_scores(*rising, (0.5, 0.3, 0.2)), patience=1).stop


def test_replay_finds_the_checkpoint_a_run_would_have_stopped_after():
    rows = [(0.2, 0.3, 0.2), (0.6, 0.3, 0.2), (0.5, 0.3, 0.2), (0.55, 0.3, 0.2), (0.9, 0.3, 0.2)]
    scores = {name: {**m, "step": 100 * (i + 1)} for i, (name, m) in enumerate(_scores(*rows).items())}
    rule = dict(prompt_margin=0.02, pres_margin=0.1, prior=False, keys=KEYS)
    stopped_at, decision = replay(scores, BASE, patience=2, **rule)
    assert stopped_at == 400 and decision.stop and decision.best == "step-000002"  # the 0.9 at step 500 never came
    stopped_at, decision = replay(scores, BASE, patience=3, **rule)
    assert stopped_at is None and not decision.stop and decision.best == "step-000005"  # trained to the end


def test_a_plateau_is_no_better_and_a_drop_in_prompt_fidelity_disqualifies():
    plateau = _decide(_scores((0.5, 0.3, 0.2), (0.5, 0.3, 0.2), (0.5, 0.3, 0.2)))
    assert plateau.stop and plateau.best == "step-000001"  # ties go to the earlier step
    # higher subject fidelity, but the prompts no longer come through (CLIP-T below base - margin)
    memorised = _decide(_scores((0.3, 0.3, 0.2), (0.7, 0.2, 0.2), (0.9, 0.1, 0.2)))
    assert memorised.stop and memorised.best == "step-000001"


def test_it_does_not_stop_before_subject_fidelity_has_risen_above_the_base_models():
    flat = _decide(_scores((0.1, 0.3, 0.2), (0.05, 0.3, 0.2), (0.1, 0.3, 0.2), (0.08, 0.3, 0.2)))  # base dino 0.1
    assert not flat.stop and flat.best == "step-000001" and "has not risen above the base model's" in flat.reason
    risen = _decide(_scores((0.1, 0.3, 0.2), (0.15, 0.3, 0.2), (0.1, 0.3, 0.2), (0.12, 0.3, 0.2)))
    assert risen.stop and risen.best == "step-000002"


def test_with_the_prior_drift_disqualifies_and_nothing_eligible_stops_too():
    drifting = _scores((0.3, 0.3, 0.25), (0.6, 0.3, 0.5), (0.7, 0.3, 0.6))
    assert _decide(drifting, prior=False).best == "step-000003"
    with_prior = _decide(drifting, prior=True)
    assert with_prior.best == "step-000001" and with_prior.stop
    nothing = _decide(_scores((0.3, 0.1, 0.2), (0.4, 0.1, 0.2)))
    assert nothing.best is None and nothing.stop and "none of the 2 scored checkpoints passes" in nothing.reason
    assert not _decide(_scores((0.3, 0.1, 0.2))).stop


def test_settings_that_cannot_work_are_one_line_before_anything_loads(make_workspace, monkeypatch, tmp_path):
    ws = make_workspace("checks")

    def manifest(**settings):
        return apply_overrides(ws.manifest(), {"train.stop_when.enabled": True, "train.checkpoint_every": 2,
                                               "train.max_steps": 6, **settings})

    with pytest.raises(DboothError, match="train.checkpoint_every is 0 .* none is saved before the end"):
        check_stop_when(manifest(**{"train.checkpoint_every": 0}))
    with pytest.raises(DboothError, match="the oracle judges only the built-in world"):
        check_stop_when(manifest(**{"train.stop_when.judge": "oracle"}))
    with pytest.raises(DboothError, match="train.validation_prompts is empty"):
        check_stop_when(manifest(**{"train.validation_prompts": []}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dino = save_tiny_dino(tmp_path / "dino")
    check_stop_when(manifest(**{"eval.dino": str(dino), "eval.clip": str(dino)}))  # folders: fine
    with pytest.raises(DboothError, match="huggingface-cli download nobody/missing-clip"):
        check_stop_when(manifest(**{"eval.dino": str(dino), "eval.clip": "nobody/missing-clip"}))
    with pytest.raises(DboothError, match="has no config.json"):
        check_stop_when(manifest(**{"eval.dino": str(tmp_path)}))
    with pytest.raises(DboothError, match="train.stop_when: DINO model"):  # through `dbooth train`, before a run
        api.train(ws, {"train.stop_when.enabled": True, "train.checkpoint_every": 2, "eval.dino": "nobody/dino"})
    assert not ws.runs_dir.is_dir() or not list(ws.runs_dir.iterdir())


def test_the_oracle_needs_a_prompt_naming_one_of_its_scenes(tmp_path):
    ws = api.init(tmp_path / "heart", None, example="striped_heart")
    on = {"train.stop_when.enabled": True, "train.checkpoint_every": 100}
    check_stop_when(apply_overrides(ws.manifest(), on))  # the example's validation prompt: "... in the jungle"
    with pytest.raises(DboothError, match="none of .* names one"):
        check_stop_when(apply_overrides(ws.manifest(), {**on, "train.validation_prompts": ["a {identifier} {class}"]}))


def test_a_run_stops_when_subject_fidelity_stops_improving(make_workspace, tmp_path, monkeypatch):
    """Real sampling and tiny judges at every checkpoint; the subject figure is then scripted to peak at step 2."""
    from dbooth.eval.judges import EncoderJudge

    scripted = iter([0.1, 0.2, 0.5, 0.4, 0.3, 0.45, 0.9])  # base, steps 1-6; the run must stop before 0.9
    real = EncoderJudge.score
    seen = []

    def score(self, images, class_images):
        values = real(self, images, class_images)
        seen.append((sorted(images), len(class_images), values))
        return {**values, "dino": next(scripted)}

    monkeypatch.setattr(EncoderJudge, "score", score)
    ws = _stopping_workspace(make_workspace, tmp_path, "stops", **{
        "train.max_steps": 8, "train.checkpoint_every": 1, "train.keep_checkpoints": 1, "train.learning_rate": 1e-3,
        "train.validation_prompts": ["a {identifier} {class} on the beach", "a {identifier} {class} in the snow"],
        "train.stop_when.patience": 3, "train.stop_when.images_per_prompt": 2})
    result = api.train(ws)

    info = result.run.info()
    assert result.steps == 5 and info["steps"] == 5 and info["planned_steps"] == 8 and info["status"] == "complete"
    assert info["best_checkpoint"] == "step-000002"
    record = info["stop_when"]
    assert record["stopped"]["step"] == 5 and "no better checkpoint in the 3 after step-000002" in record["stopped"]["reason"]
    assert list(record["scores"]) == [f"step-{i:06d}" for i in range(1, 6)]
    assert record["base"]["dino"] == 0.1 and record["scores"]["step-000002"]["dino"] == 0.5
    assert record["scores"]["step-000004"]["clip_t"] == seen[4][2]["clip_t"]  # the judge's own figures are kept
    assert seen[0][:2] == (["a sks dog in the snow", "a sks dog on the beach"], 0)  # no prior: no class samples
    # keep_checkpoints 1 keeps the newest, and the best is never rotated away
    assert [p.name for p in result.run.checkpoints()] == ["step-000002", "step-000005"]
    sampled = api.sample(ws, "a sks dog", run_id=f"{result.run.id}@best")
    assert sampled.folder.parent.name == f"{result.run.id}@step-000002"


def test_a_run_that_keeps_improving_trains_to_the_end_and_its_final_weights_are_the_pick(make_workspace, tmp_path,
                                                                                          monkeypatch):
    from dbooth.eval.judges import EncoderJudge

    scripted = iter([0.1, 0.2, 0.3, 0.4])  # base, steps 1 and 2, the final step 3
    real = EncoderJudge.score
    monkeypatch.setattr(EncoderJudge, "score", lambda self, i, c: {**real(self, i, c), "dino": next(scripted)})
    ws = _stopping_workspace(make_workspace, tmp_path, "rises", **{
        "train.max_steps": 3, "train.checkpoint_every": 1, "train.stop_when.patience": 1})
    result = api.train(ws)
    info = result.run.info()
    assert result.steps == 3 and "stopped" not in info["stop_when"]
    assert list(info["stop_when"]["scores"]) == ["step-000001", "step-000002", "final"]
    assert info["best_checkpoint"] == "final"
    assert api.find_run_at(ws, "@best") == (result.run, None)


def test_a_resumed_run_keeps_its_scores_and_scores_the_base_model_once(make_workspace, tmp_path, monkeypatch):
    from interrupt import InterruptAt

    from dbooth.eval.judges import EncoderJudge

    scripted = iter([0.1, 0.5, 0.3, 0.2])  # base, step 2, then (resumed) step 4 and the final step 6
    real = EncoderJudge.score
    monkeypatch.setattr(EncoderJudge, "score", lambda self, i, c: {**real(self, i, c), "dino": next(scripted)})
    ws = _stopping_workspace(make_workspace, tmp_path, "resumes", **{
        "train.max_steps": 6, "train.checkpoint_every": 2, "train.stop_when.patience": 2})
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, reporter=InterruptAt(3))
    result = api.train(ws, resume=True)
    record = result.run.info()["stop_when"]
    assert record["base"]["dino"] == 0.1 and list(record["scores"]) == ["step-000002", "step-000004", "final"]
    assert [s["dino"] for s in record["scores"].values()] == [0.5, 0.3, 0.2]
    assert result.run.info()["best_checkpoint"] == "step-000002" and next(scripted, None) is None


def test_a_checkpoint_saved_but_not_scored_before_an_interrupt_is_scored_on_resume(make_workspace, tmp_path,
                                                                                  monkeypatch):
    from dbooth.eval.judges import EncoderJudge

    scripted = iter([0.1, KeyboardInterrupt, 0.5, 0.3, 0.2])  # base, Ctrl-C while scoring step 2, then resumed
    real = EncoderJudge.score

    def score(self, images, class_images):
        value = next(scripted)
        if value is KeyboardInterrupt:
            raise KeyboardInterrupt
        return {**real(self, images, class_images), "dino": value}

    monkeypatch.setattr(EncoderJudge, "score", score)
    ws = _stopping_workspace(make_workspace, tmp_path, "unscored", **{
        "train.max_steps": 6, "train.checkpoint_every": 2, "train.stop_when.patience": 2})
    with pytest.raises(KeyboardInterrupt):
        api.train(ws)
    from dbooth.workspace.folder import find_run

    stopped = find_run(ws, complete=False)
    assert [p.name for p in stopped.checkpoints()] == ["step-000002"]
    assert stopped.info()["stop_when"]["scores"] == {}  # saved, never scored
    result = api.train(ws, resume=True)
    record = result.run.info()["stop_when"]
    assert list(record["scores"]) == ["step-000002", "step-000004", "final"]
    assert [s["dino"] for s in record["scores"].values()] == [0.5, 0.3, 0.2] and next(scripted, None) is None
    assert result.run.info()["best_checkpoint"] == "step-000002"


def test_the_margin_follows_the_judges_units_unless_set():
    from dbooth.eval.judges import EncoderJudge
    from dbooth_shapes.judge import OracleJudge
    from dbooth.training.early_stop import prompt_margin

    oracle = OracleJudge(oracle=None, subject="striped_heart")
    assert prompt_margin(None, oracle, 0.02) == 0.25  # shares of samples: one miss in 12 is 0.08
    assert prompt_margin(None, EncoderJudge(None, None, None, None, None), 0.02) == 0.02  # CLIP-T cosines
    assert prompt_margin(0.05, oracle, 0.02) == 0.05  # an explicit setting wins
    # with the oracle's default one missed scene in 12 samples no longer disqualifies a checkpoint
    base = {"subject_fidelity": 0.0, "prompt_fidelity": 1.0, "pres": 0.0}
    scores = {"step-000001": {"subject_fidelity": 0.5, "prompt_fidelity": 11 / 12, "pres": 0.0}}
    keys = OracleJudge.keys
    assert decide(scores, base, patience=2, prompt_margin=0.02, pres_margin=0.1, prior=True, keys=keys).best is None
    picked = decide(scores, base, patience=2, prompt_margin=prompt_margin(None, oracle, 0.02), pres_margin=0.1,
                    prior=True, keys=keys)
    assert picked.best == "step-000001"
