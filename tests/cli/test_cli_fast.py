"""The CLI answers help, usage errors and model-free errors without importing the heavy libraries.

Checked through ``sys.modules`` in a fresh interpreter (not with a stopwatch): a command that
imports torch, diffusers, transformers, peft or accelerate pays seconds before it can answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dbooth import api
from dbooth.workspace.folder import MANIFEST_NAME, new_run

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")

# runs dbooth's real entry point, then reports the exit code and which heavy modules were imported
DRIVER = """
import json, sys
sys.argv = ["dbooth", *json.loads(sys.argv[1])]
from dbooth.cli.app import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
heavy = sorted(m for m in %r if m in sys.modules)
print("\\nDRIVER " + json.dumps({"code": code, "heavy": heavy}))
""" % (HEAVY,)


def drive(args: list[str], cwd: Path) -> tuple[dict, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("DRIVER ")]
    assert marker, proc.stdout + proc.stderr
    return json.loads(marker[-1][len("DRIVER "):]), proc.stdout + proc.stderr


def test_importing_the_cli_and_building_the_app_imports_no_heavy_library():
    code = ("import sys, typer, dbooth.cli.app; typer.main.get_command(dbooth.cli.app.app); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    api.init(root / "noprior", "star", example="polka_circle")  # prior on, photos, no class images
    ws = api.init(root / "ws", "star", example="checkered_star")  # photos, but no runs
    bad = api.init(root / "bad", "dog")
    text = bad.manifest_path.read_text().replace("max_steps: 800", "max_steps: -5")
    assert text != bad.manifest_path.read_text()
    bad.manifest_path.write_text(text)
    blind = api.init(root / "blind", "dog")  # stop_when on, with a judge that is nowhere offline
    text = blind.manifest_path.read_text().replace("dino: facebook/dino-vits16", "dino: nobody/no-such-dino")
    blind.manifest_path.write_text(text.replace("stop_when:\n    # Off by default: the run trains for max_steps. "
                                                "On needs checkpoint_every (each checkpoint is scored).\n    "
                                                "enabled: false", "stop_when:\n    enabled: true"))
    assert blind.manifest().train.stop_when.enabled and blind.manifest().eval.dino == "nobody/no-such-dino"
    unfinished = new_run(ws, "lora")
    unfinished.write_info({"run_id": unfinished.id, "method": "lora", "status": "failed", "error": "boom"})
    cases = {
        "help": ["--help"],
        "version": ["--version"],
        "train_help": ["train", "--help"],
        "export_help": ["export", "--help"],
        "typo_verb": ["trian"],
        "typo_option": ["train", "--stpes", "3"],
        "missing_ws": ["train", "-w", "nope"],
        "missing_ws_status": ["status", "-w", "nope"],
        "bad_manifest": ["train", "-w", "bad"],
        "bad_identifier": ["init", "x", "--class", "dog", "--identifier", "s k!"],
        "no_class_images": ["train", "-w", "noprior"],
        "no_finished_run_sample": ["sample", "a sks star", "-w", "ws"],
        "no_finished_run_export": ["export", "-w", "ws", "-f", "lora"],
        "no_finished_run_merge": ["merge-lora", "-w", "ws"],
        "no_finished_run_eval": ["eval", "-w", "ws"],
        "resume_nothing": ["train", "-w", "ws", "--resume"],
        "stop_when_without_judges": ["train", "-w", "blind"],
        "status": ["status", "-w", "ws"],
        "status_json": ["status", "-w", "ws", "--json"],
        "init_example": ["init", "fresh", "--example", "striped_heart"],
        "identifiers_help": ["identifiers", "--help"],
        "identifiers_ws": ["identifiers", "-w", "ws"],
        "init_auto_warned": ["init", "auto", "--class", "star", "--base", "builtin:shapes", "--identifier", "star"],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(drive, args, root) for name, args in cases.items()}
        return root, {name: f.result() for name, f in futures.items()}


SUCCEEDS = ("help", "version", "train_help", "export_help", "status", "status_json", "init_example",
            "identifiers_help", "identifiers_ws", "init_auto_warned")
FAILS = ("typo_verb", "typo_option", "missing_ws", "missing_ws_status", "bad_manifest", "bad_identifier",
         "no_class_images", "no_finished_run_sample", "no_finished_run_export", "no_finished_run_merge",
         "no_finished_run_eval", "resume_nothing", "stop_when_without_judges")


@pytest.mark.parametrize("case", SUCCEEDS + FAILS)
def test_answers_without_heavy_imports(answers, case):
    result, output = answers[1][case]
    assert result["code"] == (0 if case in SUCCEEDS else 2), output
    assert result["heavy"] == [], f"{case} imported {result['heavy']}"
    assert "Traceback" not in output, output


def test_model_free_errors_say_what_is_wrong(answers):
    _, results = answers
    expect = {
        "missing_ws": "does not exist",
        "bad_manifest": f"{MANIFEST_NAME}:",
        "bad_identifier": "one word",
        "no_class_images": "no class images",
        "no_finished_run_export": "no finished training runs",
        "resume_nothing": "no unfinished run with a checkpoint",
        "stop_when_without_judges": "train.stop_when: DINO model nobody/no-such-dino is not in the local Hugging Face "
                                    "cache",
    }
    for case, words in expect.items():
        _, output = results[case]
        assert words in output, (case, output)
        assert sum("error:" in line for line in output.splitlines()) == 1, (case, output)


def test_identifiers_answer_from_the_tokenizer_alone(answers):
    _, results = answers
    assert "zwx  qlt  vyr  pxo  mkv" in results["identifiers_ws"][1]  # sks is the workspace's own
    assert "warning:" in results["init_auto_warned"][1] and "ordinary word" in results["init_auto_warned"][1]


def test_version_prints_the_package_version(answers):
    from dbooth import __version__

    _, output = answers[1]["version"]
    assert f"dbooth {__version__}" in output


def test_status_json_describes_the_workspace(answers):
    _, output = answers[1]["status_json"]
    data = json.loads(output[: output.index("\nDRIVER ")])
    assert data["class_noun"] == "star" and data["photos"] == 5 and data["class_images"] == 0
    [run] = data["runs"]
    assert run["state"] == "failed" and run["error"] == "boom" and run["resumable"] is False


def test_ctrl_c_says_how_to_go_on_for_each_verb():
    from dbooth.cli.app import interrupted_message

    assert "dbooth train --resume" in interrupted_message(["train", "-w", "ws"])
    assert "dbooth prior" in interrupted_message(["prior", "-w", "ws"]) and "kept" in interrupted_message(["prior"])
    assert "run the command again" in interrupted_message(["export", "--format", "lora"])
