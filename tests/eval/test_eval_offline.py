"""`dbooth eval` on a machine without network and an empty Hugging Face cache, as a new user meets it:
on the built-in model the oracle judges alone; on any other base the missing encoder is one line, at once
(no minute of "Retrying in 8s" while huggingface_hub waits on an unreachable hub)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from previous_main import FIXTURE, finished_workspace
from run_cli import subprocess_env, user_error

from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest

QUICK = ["eval.num_prompts=2", "eval.images_per_prompt=1", "eval.class_images=2", "sample.steps=2"]


def _no_network(tmp_path: Path) -> dict[str, str]:
    """No HF_HUB_OFFLINE (a new user has not set it), an empty cache, and a hub whose port refuses at once."""
    env = subprocess_env()
    env.pop("HF_HUB_OFFLINE", None)
    (tmp_path / "hf").mkdir()
    return dict(env, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")


def _finished_workspace(tmp_path: Path) -> Path:
    ws = finished_workspace(tmp_path / "heart")
    manifest = ws / "dbooth.yaml"
    write_manifest(manifest, apply_overrides(load_manifest(manifest), dict(s.split("=") for s in QUICK)))
    return ws


def _dbooth(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbooth", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_on_the_builtin_model_eval_runs_with_the_oracle_alone(tmp_path):
    ws = _finished_workspace(tmp_path)
    result = _dbooth(["eval", "-w", str(ws)], _no_network(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "oracle alone" in result.stderr and "Retrying" not in result.stderr + result.stdout
    [run] = list((ws / "runs").iterdir())
    data = json.loads((run / "eval.json").read_text())
    assert data["judge"] == "oracle" and data["encoders"] is None
    assert set(data["metrics"]) == {"base", "final"}
    assert {"subject_fidelity", "prompt_fidelity", "pres"} <= set(data["metrics"]["final"])
    assert "subject fidelity" in (run / "report.html").read_text()


@pytest.mark.slow
def test_on_another_base_a_missing_encoder_is_one_line_at_once(tmp_path, tiny_base):
    ws = tmp_path / "tiny"
    env = _no_network(tmp_path)
    assert _dbooth(["init", str(ws), "--class", "dog", "--base", str(tiny_base)], env).returncode == 0
    shutil.copy(FIXTURE / "workspace" / "instance" / "striped_heart_00.png", ws / "instance" / "dog.png")
    (ws / "runs" / "r1" / "final").mkdir(parents=True)
    (ws / "runs" / "r1" / "run.json").write_text(json.dumps({"run_id": "r1", "method": "lora", "status": "complete",
                                                              "base_model": str(tiny_base)}))
    started = time.monotonic()
    result = _dbooth(["eval", "-w", str(ws)], env)
    took = time.monotonic() - started
    message = user_error(result)
    assert "facebook/dino-vits16" in message and "huggingface-cli download" in message
    assert "Retrying" not in result.stderr
    assert took < 30, took  # python and the libraries' imports; without the check it was over 70 s
