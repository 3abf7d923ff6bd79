"""What the run page reads from the folder: validation images as a prompt x step grid labelled by their own
records, the format of an export from its header, the samples that belong to the run."""

from __future__ import annotations

import fake_run

from dbooth.runpage import step_images
from dbooth.runpage.run_files import export_items, safetensors_metadata
from dbooth.runpage.run_samples import belongs_to, find_samples


def test_validation_images_form_a_prompt_by_step_grid(tmp_path):
    run = tmp_path / "run"
    fake_run.validation(run, steps=(10, 20), seeds=(0, 1))
    fake_run.image(run / "validation" / "step-000020" / "p10-s0.png", record={"prompt": "the eleventh"})
    (run / "validation" / "notes").mkdir()  # not a step: ignored
    grid = step_images.read_step_images(run / "validation")
    assert grid.steps == [10, 20] and grid.shown == [10, 20]
    labels = [label for label, _ in grid.rows]
    assert labels == [fake_run.PROMPTS[0], fake_run.PROMPTS[1], "the eleventh"]  # p0, p1, p10: by number
    by_step = dict(grid.rows)[fake_run.PROMPTS[1]]
    assert [p.name for p in by_step[20]] == ["p1-s0.png", "p1-s1.png"]
    assert dict(grid.rows)["the eleventh"] == {20: [run / "validation" / "step-000020" / "p10-s0.png"]}
    assert step_images.read_step_images(tmp_path / "none") is None


def test_an_upscalers_validation_rows_are_its_photos(tmp_path):
    run = tmp_path / "run"
    fake_run.image(run / "validation" / "step-000050" / "photo0-s0.png",
                   record={"prompt": "a photo of sks dog", "photo": "dog1.png", "noise_level": 10})
    grid = step_images.read_step_images(run / "validation")
    assert grid.rows[0][0] == "photo dog1.png, shrunk and enlarged again"


def test_many_steps_are_shown_evenly_spaced_with_the_first_and_last():
    steps = list(range(100, 2100, 100))  # 20 steps
    shown = step_images.spread(steps, 8)
    assert len(shown) == 8 and shown[0] == 100 and shown[-1] == 2000 and shown == sorted(shown)
    assert step_images.spread([1, 2, 3], 8) == [1, 2, 3]


def test_an_exports_format_comes_from_its_header(tmp_path):
    ws = fake_run.workspace(tmp_path / "ws")
    run = fake_run.run_folder(ws)
    path = fake_run.export(run, fmt="lora")
    assert safetensors_metadata(path) == {"dbooth.format": "lora", "dbooth.dtype": "fp16"}
    (run / "export" / "stray.safetensors").write_bytes(b"\xff" * 20)  # not readable: skipped, no error
    (run / "export" / "notes.txt").write_text("x")
    [item] = export_items(run, "StableDiffusionPipeline")
    assert item.path == path and item.what.startswith("LoRA weights, diffusers format, fp16")
    assert item.loads[0].startswith("diffusers: `pipe.load_lora_weights(")
    assert any("lora-kohya" in line for line in item.loads)  # the note: ComfyUI needs the kohya format
    assert safetensors_metadata(tmp_path / "missing.safetensors") == {}


def test_samples_belong_to_the_run_that_drew_them(tmp_path):
    run_id = fake_run.RUN_ID
    assert belongs_to(run_id, run_id) and belongs_to(f"{run_id}@step-000020", run_id)
    assert belongs_to(f"{run_id}+base-upscaler", run_id)
    assert not belongs_to(f"{run_id}-2", run_id) and not belongs_to("base", run_id)
    ws = fake_run.workspace(tmp_path / "ws")
    for k in range(8):
        fake_run.samples(ws, stamp=f"20260101-00010{k}")
    sets, total = find_samples(ws / "samples", run_id, most=6)
    assert total == 8 and len(sets) == 6 and sets[0].folder.name == "20260101-000107"  # newest first
    assert sets[0].prompt == "a sks dog on the moon" and sets[0].seeds == [0, 1] and sets[0].grid is not None
