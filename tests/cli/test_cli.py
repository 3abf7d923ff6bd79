"""The real ``dbooth`` command in a subprocess: user mistakes end in one ``error:`` line and exit code 2.

``cli.main()`` turns a DboothError into that line, so these run the installed entry point
(``python -m dbooth``) rather than Typer's CliRunner. Each subprocess pays the library imports
(~5 s), so the workspaces are prepared in-process once and all commands run concurrently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import dbooth
from dbooth import api
from run_cli import run_dbooth, subprocess_env, user_error  # noqa: F401 (other tests import them from here too)
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.workspace.folder import MANIFEST_NAME

HUB_ID = "some-org/some-model"
FAST = {"prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 2, "train.checkpoint_every": 0,
        "train.validation_every": 0}


def edit_manifest(path: Path, old: str, new: str) -> int:
    """Replace the first line starting with ``old`` (after indentation); return its 1-based number.

    ``train:`` comes before ``upscaler:``, whose keys share some names (max_steps, learning_rate)."""
    lines = path.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.lstrip().startswith(old)]
    assert hits, old
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = f"{indent}{new}\n"
    path.write_text("".join(lines))
    return i + 1


@pytest.fixture(scope="module")
def cli(tmp_path_factory, tiny_base):
    """Prepare one workspace per case, run every command concurrently, return {case: (result, details)}."""
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (200, 40 * i, 60)).save(photos / f"{i:02d}.jpg")

    def workspace(name: str, base: str = str(tiny_base), images: Path | None = photos):
        ws = api.init(root / name, "dog", base_model=base, images=images)
        if base == str(tiny_base):
            write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), FAST))
        return ws

    details: dict[str, object] = {}
    workspace("empty", images=None)
    workspace("hub", base=HUB_ID)
    details["hub_manifest"] = (root / "hub" / MANIFEST_NAME).read_bytes()
    details["value_line"] = edit_manifest(workspace("value").manifest_path, "max_steps:", "max_steps: -1")
    details["key_line"] = edit_manifest(workspace("key").manifest_path, "learning_rate:", "learning_rat: 1e-4")
    corrupt = workspace("corrupt")
    (corrupt.instance_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")

    commands = {
        "help": ["--help"],
        "demo_help": ["demo", "--help"],
        "export_help": ["export", "--help"],
        "init": ["init", "fresh", "--class", "dog", "--base", HUB_ID, "--images", str(photos)],
        "missing": ["sample", "-w", "nope", "a photo of sks dog"],
        "empty": ["train", "-w", "empty", "--no-prior"],
        "hub": ["train", "-w", "hub", "--no-prior"],
        "exists": ["init", "hub", "--class", "cat"],
        "value": ["train", "-w", "value"],
        "key": ["prior", "-w", "key"],
        "corrupt": ["train", "-w", "corrupt", "--no-prior"],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:  # the CPU, not the pool, is the limit
        futures = {case: pool.submit(run_dbooth, args, root) for case, args in commands.items()}
        results = {case: f.result() for case, f in futures.items()}
    return root, results, details


def test_help_lists_the_verbs(cli):
    _, results, _ = cli
    result = results["help"]
    assert result.returncode == 0, result.stderr
    for verb in ("init", "prior", "train", "sample"):
        assert f" {verb} " in result.stdout, result.stdout


def test_demo_help_names_the_default_subject(cli):
    from dbooth_shapes.demo import DEFAULT_SUBJECT

    result = cli[1]["demo_help"]
    assert result.returncode == 0, result.stderr
    assert DEFAULT_SUBJECT in result.stdout, result.stdout


def test_export_help_has_the_client_table(cli):
    from dbooth.export.clients import CLIENTS, FORMATS, clients_text

    result = cli[1]["export_help"]
    assert result.returncode == 0, result.stderr
    for row in clients_text().splitlines():
        assert row.strip() in result.stdout, row
    for name in (*CLIENTS, *FORMATS):
        assert name in result.stdout, name
    assert "use lora-kohya for them" in " ".join(result.stdout.split())  # however the help is wrapped


def test_cli_starts_without_torch():
    """Help text, including export's client table, must not cost the torch and diffusers imports."""
    code = "import sys, dbooth.cli.app; print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_init_creates_a_workspace(cli):
    root, results, _ = cli
    result = results["init"]
    assert result.returncode == 0, result.stderr
    # the result on stdout, the hint on stderr
    assert "created" in result.stdout and "created" not in result.stderr
    assert "next:" in result.stderr
    ws = api.open_workspace(root / "fresh")
    assert ws.manifest().base_model == HUB_ID
    assert sorted(p.name for p in ws.instance_dir.iterdir()) == ["00.jpg", "01.jpg", "02.jpg"]


def test_missing_workspace(cli):
    message = user_error(cli[1]["missing"])
    assert "nope" in message and "does not exist" in message


def test_empty_instance_folder(cli):
    message = user_error(cli[1]["empty"])
    assert "instance images" in message and "empty" in message


def test_base_model_unreachable_offline(cli):
    message = user_error(cli[1]["hub"])
    assert HUB_ID in message
    assert "cannot be reached" in message and "offline" in message


def test_init_on_an_existing_folder(cli):
    root, results, details = cli
    message = user_error(results["exists"])
    assert "already exists" in message
    assert (root / "hub" / MANIFEST_NAME).read_bytes() == details["hub_manifest"]


def test_invalid_manifest_value(cli):
    _, results, details = cli
    message = user_error(results["value"])
    assert f"{MANIFEST_NAME}:{details['value_line']}: train.max_steps:" in message
    assert "-1" in message


def test_unknown_manifest_key_suggests_the_right_one(cli):
    _, results, details = cli
    message = user_error(results["key"])
    assert f"{MANIFEST_NAME}:{details['key_line']}: train.learning_rat:" in message
    assert "did you mean 'learning_rate'" in message


def test_corrupt_instance_image_is_named(cli):
    message = user_error(cli[1]["corrupt"])
    assert "broken.jpg" in message
    assert "00.jpg" not in message  # only the bad file is listed
