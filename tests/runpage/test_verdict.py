"""The top of the run page: the verdict follows the run's state and its figures against the base model, and
every command it suggests parses with the real CLI (so it names only verbs and options that exist)."""

from __future__ import annotations

import os

import click
import fake_run
import pytest
import typer

from dbooth.cli.app import app
from dbooth.runpage import verdict
from dbooth.runpage.run_folder import read_run_folder


def parses(argv: list[str]) -> None:
    """Parse ``argv`` (``dbooth VERB ...``) with the CLI's own parser: an unknown option or verb raises."""
    assert argv[0] == "dbooth"
    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group), argv[1])
    assert command is not None, argv
    command.make_context(argv[1], list(argv[2:]))


@pytest.fixture
def ws(tmp_path):
    return fake_run.workspace(tmp_path / "ws")


def _commands(run) -> list[list[str]]:
    return [argv for _, argv in verdict.next_steps(read_run_folder(run))]


def test_a_finished_unscored_run_says_so_and_offers_eval_sample_and_export(ws):
    run = fake_run.run_folder(ws)
    fake_run.checkpoint(run, 20)
    v = verdict.judge(read_run_folder(run))
    assert v.tone == "info" and "Not scored yet" in v.headline and "Trained 40 steps" in v.headline
    commands = _commands(run)
    assert commands[0] == ["dbooth", "eval", "-w", str(ws), "--run", fake_run.RUN_ID, "--checkpoints"]
    verbs = [c[1] for c in commands]
    assert verbs == ["eval", "sample", "export", "export", "merge-lora"]
    assert ["--format", "lora-kohya"] == commands[2][-2:] and commands[1][-1] == fake_run.PROMPTS[0]
    for argv in commands:
        parses(argv)


def test_a_scored_run_that_learned_points_at_its_best_checkpoint(ws):
    run = fake_run.run_folder(ws, best_checkpoint="step-000020")
    fake_run.checkpoint(run, 20)
    fake_run.evaluation(run)
    v = verdict.judge(read_run_folder(run))
    assert v.tone == "ok" and "rose from 0.101 to 0.501 at step-000020 (the best checkpoint)" in v.headline
    assert any("; prompt fidelity (CLIP-T) 0.310 for the base model, 0.295 for step-000020;" in d for d in v.details)
    commands = _commands(run)
    assert [c[1] for c in commands] == ["sample", "export", "export", "merge-lora"]  # scored: no eval to run
    assert all(f"{fake_run.RUN_ID}@best" in c for c in commands)
    for argv in commands:
        parses(argv)


def test_a_full_run_exports_whole_models(ws):
    run = fake_run.run_folder(ws, run_id="20260101-000000-full", method="full")
    commands = _commands(run)
    assert [c[-1] for c in commands if c[1] == "export"] == ["single-file", "diffusers"]
    assert "merge-lora" not in [c[1] for c in commands]
    assert ["--run", "20260101-000000-full"] == commands[0][4:6] and commands[0][1] == "eval"
    assert "--checkpoints" not in commands[0]  # nothing but the final weights to score
    for argv in commands:
        parses(argv)


def test_a_run_that_did_not_learn_says_so_and_suggests_training_longer(ws):
    run = fake_run.run_folder(ws)
    data = fake_run.eval_data(best="final")
    data["metrics"]["final"]["dino"] = 0.12
    fake_run.evaluation(run, data)
    v = verdict.judge(read_run_folder(run))
    assert v.tone == "warn" and "not learned yet" in v.headline and "0.120 at final" in v.headline
    commands = _commands(run)
    assert commands[-1] == ["dbooth", "train", "-w", str(ws), "--lora", "--steps", "80"]
    assert all("@best" not in " ".join(c) for c in commands)  # the best is the final weights: plain RUN
    for argv in commands:
        parses(argv)


def test_when_no_checkpoint_passes_the_rule_the_page_says_why(ws):
    run = fake_run.run_folder(ws)
    fake_run.evaluation(run, fake_run.eval_data(best=None))
    v = verdict.judge(read_run_folder(run))
    assert any("No checkpoint passed the rule" in d for d in v.details)


@pytest.mark.parametrize("status, extra, tone, words", [
    ("interrupted", {"interrupted_at": 25}, "warn", "interrupted at step 25 of 40"),
    ("failed", {"error": "CUDA out of memory"}, "bad", "Failed: CUDA out of memory"),
    ("running", {"pid": os.getpid()}, "info", "Training: step 40 of 40"),
])
def test_unfinished_runs(ws, status, extra, tone, words):
    run = fake_run.run_folder(ws, status=status, **extra)
    fake_run.history(run)
    fake_run.checkpoint(run, 20)
    v = verdict.judge(read_run_folder(run))
    assert v.tone == tone and words in v.headline
    commands = _commands(run)
    if status == "running":
        assert commands == []
    else:
        assert commands == [["dbooth", "train", "-w", str(ws), "--resume"]]  # checkpoint 20 holds the resume state
        parses(commands[0])


def test_an_upscaler_run_is_sampled_and_exported_as_one(ws):
    run = fake_run.run_folder(ws, run_id="20260101-000000-upscaler-full", method="full", stage="upscaler",
                              family="sd-x4-upscaler")
    commands = _commands(run)
    assert commands[0][:3] == ["dbooth", "sample", "-w"] and "--upscale" in commands[0]
    assert commands[1][-3:] == ["20260101-000000-upscaler-full", "--format", "diffusers"]
    assert "--upscaler" in commands[1] and len(commands) == 2  # no single file: no client loads an upscaler so
    for argv in commands:
        parses(argv)
