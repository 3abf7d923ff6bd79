"""`dbooth train` turns its options into manifest overrides (the library does the rest)."""

from __future__ import annotations

from types import SimpleNamespace

from typer.testing import CliRunner

from dbooth import api
from dbooth.cli.app import app


def _overrides(monkeypatch, make_ws, args: list[str]) -> dict:
    seen = {}

    def fake_train(ws, overrides, resume=False, reporter=None, wait=None, upscaler=False):
        seen.update({k: v for k, v in overrides.items() if v is not None})
        run = SimpleNamespace(final_dir=ws.root, dir=ws.root, id="fake", info=dict)  # run.json: {}
        return SimpleNamespace(run=run, steps=1, seconds=0.0, final_loss=0.0)

    monkeypatch.setattr(api, "train", fake_train)
    result = CliRunner().invoke(app, ["train", "-w", str(make_ws), *args])
    assert result.exit_code == 0, result.output
    return seen


def test_training_options_become_overrides(monkeypatch, tmp_path):
    ws = api.init(tmp_path / "ws", "dog", base_model="builtin:shapes")
    seen = _overrides(monkeypatch, ws.root, ["--snr-gamma", "5", "--noise-offset", "0.05", "--ema",
                                             "--optimizer", "prodigy", "--dora"])
    assert seen == {"train.snr_gamma": 5.0, "train.noise_offset": 0.05, "train.ema.enabled": True,
                    "train.optimizer": "prodigy", "train.lora.use_dora": True}


def test_train_says_why_it_stopped_early_and_what_it_picked(monkeypatch, tmp_path):
    ws = api.init(tmp_path / "ws", "dog", base_model="builtin:shapes")
    record = {"stopped": {"step": 500, "reason": "no better checkpoint in the 2 after step-000300"},
              "best": "step-000300"}
    run = SimpleNamespace(final_dir=ws.root, dir=ws.root, id="RUN", info=lambda: {"stop_when": record})
    monkeypatch.setattr(api, "train", lambda *a, **k: SimpleNamespace(run=run, steps=500, seconds=1.0, final_loss=0.1))
    result = CliRunner().invoke(app, ["train", "-w", str(ws.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "stopped early at step 500: no better checkpoint in the 2 after step-000300" in result.output
    assert "best checkpoint: step-000300 (`dbooth sample --run RUN@best`)" in result.output
