"""Default names of exports: ``corgi-20261207-180120.safetensors``, the workspace's name, then the run's.

A name says what the file holds once it is copied out of the run folder (AUTOMATIC1111 lists a LoRA by
its file name and prompts it as ``<lora:NAME:1>``; InvokeAI names an imported folder after it):

- the workspace's name (every subject of a run is trained in its workspace: the top-level one has no
  name of its own, and a run with further subjects holds them all), or, for a run folder outside a
  workspace's ``runs/``, its class noun;
- the run: its id's start time (``20261207-180120``, what ``dbooth status`` lists), without the method
  word, plus ``-2`` when two runs started in the same second; ``@400`` for a checkpoint's weights;
- only what tells two exports of one run apart: a LoRA run's kohya file (the one prompted by name) has
  no suffix, its diffusers-layout file ``-diffusers``, and the run merged into its base model ``-merged``
  (folder or single file); a full run's folder and single file differ by ``.safetensors`` already;
- ``-fp16``/``-bf16`` when the weights are not fp32.

So no word comes twice, and the name differs for every (run, step, format, dtype).
"""

from __future__ import annotations

import re
from pathlib import Path

from dbooth.export.run_info import METHODS, RunInfo

_RUN_ID = re.compile(r"(?P<stamp>\d{8}-\d{6})-(?P<method>" + "|".join(METHODS) + r")(?P<n>-\d+)?")
LORA_RUN_SUFFIXES = {"lora-kohya": "", "lora": "diffusers", "diffusers": "merged", "single-file": "merged"}


def default_stem(run: RunInfo, fmt: str, dtype: str) -> str:
    """The default file stem (or folder name) of ``run`` exported as ``fmt`` in ``dtype``."""
    name = f"{owner_name(run)}-{run_part(run.run_dir, run.run_id)}"
    if run.checkpoint is not None:
        name += f"@{run.steps}"
    suffix = LORA_RUN_SUFFIXES[fmt] if run.is_lora else ""
    return name + (f"-{suffix}" if suffix else "") + ("" if dtype == "fp32" else f"-{dtype}")


def owner_name(run: RunInfo) -> str:
    """The workspace's folder name for a run in ``WS/runs/``, else the run's class noun; safe in a file name
    and in ``<lora:NAME:1>`` (no spaces, colons or angle brackets)."""
    folder = run.run_dir.resolve()
    name = folder.parent.parent.name if folder.parent.name == "runs" else run.class_noun
    return re.sub(r"\W+", "-", name).strip("-") or "dbooth"


def run_part(run_dir: Path, run_id: str) -> str:
    """``20261207-180120`` for run ``20261207-180120-lora``, ``…-2`` for ``…-lora-2``; the whole id when it is
    not one dbooth made, or when a run of the other method started in the same second (both would shorten
    to the same name)."""
    match = _RUN_ID.fullmatch(run_id)
    if match is None:
        return run_id
    short = match["stamp"] + (match["n"] or "")
    for method in METHODS:
        twin = run_dir.parent / (f"{match['stamp']}-{method}" + (match["n"] or ""))
        if method != match["method"] and twin.is_dir():
            return run_id
    return short
