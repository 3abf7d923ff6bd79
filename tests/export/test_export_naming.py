"""Default export names: the workspace and the run's start time, no word twice, one name per export."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from dbooth.export.clients import FOLDER_FORMATS, FORMATS, LORA_FORMATS
from dbooth.export.naming import default_stem
from dbooth.export.run_info import RunInfo

DTYPES = ("fp32", "fp16", "bf16")


def _run(run_dir: Path, method: str = "lora", **changes) -> RunInfo:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = RunInfo(run_dir=run_dir, run_id=run_dir.name, method=method, base_model="builtin:shapes",
                   identifier="sks", class_noun="dog", instance_prompt="a photo of sks dog", steps=800,
                   train_text_encoder=False, lora_rank=4 if method == "lora" else None,
                   lora_alpha=4.0 if method == "lora" else None)
    return replace(info, **changes)


def _at(run: RunInfo, step: int) -> RunInfo:
    return replace(run, checkpoint=run.run_dir / "checkpoints" / f"step-{step:06d}", run_steps=run.steps, steps=step)


def _written_name(run: RunInfo, fmt: str, dtype: str) -> str:
    """What lands on disk: files get .safetensors, folders keep the stem."""
    return default_stem(run, fmt, dtype) + ("" if fmt in FOLDER_FORMATS else ".safetensors")


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[-@.]", name.lower()) if w]


def test_names_start_with_the_workspace_then_the_run_start(tmp_path):
    run = _run(tmp_path / "corgi" / "runs" / "20261207-180120-lora")

    assert default_stem(run, "lora-kohya", "fp32") == "corgi-20261207-180120"  # the file prompted by name
    assert default_stem(run, "lora", "fp32") == "corgi-20261207-180120-diffusers"
    assert default_stem(run, "single-file", "fp16") == "corgi-20261207-180120-merged-fp16"
    assert default_stem(_at(run, 400), "lora-kohya", "bf16") == "corgi-20261207-180120@400-bf16"
    full = _run(tmp_path / "corgi" / "runs" / "20261207-190000-full", method="full")
    assert default_stem(full, "diffusers", "fp32") == "corgi-20261207-190000"
    assert default_stem(full, "single-file", "fp32") == "corgi-20261207-190000"  # + .safetensors: no clash


@pytest.mark.parametrize("method", ["lora", "full"])
def test_every_run_step_format_and_dtype_gets_its_own_name_with_no_word_twice(tmp_path, method):
    runs = [_run(tmp_path / "corgi" / "runs" / f"20261207-180120-{method}{n}", method=method) for n in ("", "-2")]
    runs += [_at(r, step) for r in runs for step in (200, 400)]
    formats = FORMATS if method == "lora" else [f for f in FORMATS if f not in LORA_FORMATS]
    names = [_written_name(r, f, d) for r, f, d in itertools.product(runs, formats, DTYPES)]

    assert len(set(names)) == len(names) == len(runs) * len(formats) * len(DTYPES)
    for name in names:
        words = _words(name)
        assert len(words) == len(set(words)), name
        assert "lora" not in words and "full" not in words and "kohya" not in words, name


def test_runs_of_both_methods_started_in_the_same_second_keep_apart(tmp_path):
    runs = tmp_path / "corgi" / "runs"
    lora, full = _run(runs / "20261207-180120-lora"), _run(runs / "20261207-180120-full", method="full")

    assert default_stem(lora, "single-file", "fp32") != default_stem(full, "single-file", "fp32")
    assert default_stem(lora, "lora-kohya", "fp32") == "corgi-20261207-180120-lora"  # the method, once


def test_the_workspace_name_is_made_safe_for_a_file_and_a_prompt_tag(tmp_path):
    run = _run(tmp_path / "my dog: v2" / "runs" / "20261207-180120-lora")
    assert default_stem(run, "lora-kohya", "fp32") == "my-dog-v2-20261207-180120"


def test_a_run_folder_outside_a_workspace_is_named_after_its_class(tmp_path):
    run = _run(tmp_path / "somewhere" / "20261207-180120-lora", class_noun="red car")
    assert default_stem(run, "lora-kohya", "fp32") == "red-car-20261207-180120"
    other = _run(tmp_path / "elsewhere" / "my-run")  # an id dbooth did not make is kept whole
    assert default_stem(other, "lora", "fp16") == "dog-my-run-diffusers-fp16"
