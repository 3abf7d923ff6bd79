"""``dbooth bench --static``: every published-shape configuration's estimate without building a model."""

from __future__ import annotations

import json

from rich.console import Console

from dbooth.bench.configs import CONFIGS
from dbooth.bench.static_estimate import META_MODELS, static_rows, static_table
from run_cli import run_dbooth

GIB = 2**30 / 2**20


def test_flow_rows_have_activations_and_host_figures():
    (row,) = static_rows("flux-lora-512")
    assert row["config"] == "flux-lora-512" and row["resolution"] == 512 and row["images_per_step"] == 2
    assert row["text_encoders_mb"] > 8.8 * GIB  # T5-XXL alone is 9.5 GB in bf16
    assert row["host_setup_mb"] > row["weights_mb"] + row["text_encoders_mb"]  # and the VAE
    assert row["weights_mb"] + row["training_state_mb"] == row["total_mb"]
    assert row["peak_estimate_mb"] == row["total_mb"] + row["activations_plain_mb"]


def test_the_table_shows_unet_rows_without_activations():
    rows = static_rows("sd15-lora") + static_rows("sd35m-lora-512", {"train.gradient_checkpointing": "true"})
    assert "activations_plain_mb" not in rows[0] and rows[1]["gradient_checkpointing"]
    assert rows[1]["peak_estimate_mb"] == rows[1]["total_mb"] + rows[1]["activations_checkpointed_mb"]
    console = Console(record=True, width=120)
    console.print(static_table(rows))
    text = console.export_text()
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip().startswith(("sd15", "sd35"))}
    assert lines["sd15-lora"][-1] == "-" and lines["sd35m-lora-512"][-1] != "-"


def test_every_flow_configuration_is_listed_without_a_name():
    flow = {c.name for c in CONFIGS.values() if c.model in ("sd35m", "sd35l", "flux")}
    assert flow == {f"{m}-lora{s}" for m in ("sd35m", "sd35l", "flux") for s in ("", "-512")}
    assert all(c.model in META_MODELS for c in CONFIGS.values() if c.name in flow)


def test_the_cli_prints_and_writes_the_estimate(tmp_path):
    out = tmp_path / "static.json"
    result = run_dbooth(["bench", "--static", "-c", "sd35m-lora-512", "--json", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sd35m-lora-512" in result.stdout + result.stderr
    (row,) = json.loads(out.read_text())
    assert row["family"] == "sd3" and row["activations_checkpointed_mb"] < row["activations_plain_mb"]
