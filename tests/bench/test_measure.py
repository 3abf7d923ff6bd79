"""The bench drives the real trainer: settings toggles reach it, and the report has sane numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dbooth.bench import measure, worker
from dbooth.bench.configs import CONFIGS


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine spin against each other; the tiny model needs one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench_ws(tmp_path, tiny_base):
    cfg = CONFIGS["tiny"]
    return measure.make_workspace(tmp_path / "bench", str(tiny_base), cfg.overrides, num_instance=2, num_class=2)


def _train(ws, overrides, steps=1, warmup=1, patches=None):
    return worker.run_training_spec({"workspace": str(ws.root), "overrides": overrides, "warmup": warmup,
                                     "steps": steps, "patches": patches or {}})


def test_default_settings_reach_the_trainer(bench_ws):
    import torch
    from diffusers import AutoencoderKL

    before = (torch.optim.AdamW, AutoencoderKL.encode)
    res = _train(bench_ws, {}, steps=2)
    assert (torch.optim.AdamW, AutoencoderKL.encode) == before  # the observer's patches are undone
    seen = res["observed"]
    assert seen["attention_processors"] == ["AttnProcessor2_0"]
    assert seen["vae_encodes_per_step"] == 0  # cached latents: the VAE ran before the first step only
    assert seen["text_encoder_calls_per_step"] == 0
    assert not seen["gradient_checkpointing"] and not seen["channels_last"]
    assert seen["adamw"] == "fused"  # the trainer's choice on CPU and CUDA alike
    assert len(res["step_seconds"]) == 2 and res["steps_per_s"] > 0
    assert len(res["losses"]) == 3 and all(loss == loss for loss in res["losses"])  # every step's, no NaN


def test_toggles_change_what_the_trainer_does(bench_ws):
    res = _train(bench_ws, {"train.cache_latents": False, "train.cache_text_embeddings": False,
                            "train.attention": "eager", "train.gradient_checkpointing": True,
                            "train.channels_last": True}, patches={"adamw": "foreach"})
    seen = res["observed"]
    assert seen["attention_processors"] == ["AttnProcessor"]
    assert seen["vae_encodes_per_step"] >= 1  # instance and class batches encoded every step
    assert seen["text_encoder_calls_per_step"] >= 1
    assert seen["gradient_checkpointing"] and seen["channels_last"]
    assert seen["adamw"] == "foreach"


@pytest.mark.slow
def test_cli_bench_writes_json(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dbooth.cli.app import app

    monkeypatch.setenv("DBOOTH_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--config", "tiny", "--steps", "2", "--warmup", "1", "--threads", "1",
                                      "--set", "prior.steps=2", "--set", "prior.batch_size=2", "--class-images", "5",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["device"].startswith(("cpu", "cuda"))
    assert 0 < report["steps_per_s"] < 10_000
    assert 50 < report["peak_memory_mb"] < 200_000  # a python process with torch is at least ~50 MB
    s = report["settings"]
    assert s["method"] == "full" and s["resolution"] == 32 and s["prior_preservation"] is True
    assert s["cache_latents"] is True and s["attention"] == "sdpa"
    assert report["flops_per_step"] > 0 and report["achieved_tflops"] > 0
    assert report["class_images_per_s"] > 0
    # --class-images 5 at batch 2: three batches, as `dbooth prior` makes them, with its time split
    split = report["generation"][0]["split"]
    assert split["images"] == 6 and split["load"] > 0 and split["denoise"] > 0 and split["decode"] > 0
    assert "where the class-image time went" in result.output
    assert report["static_memory_estimate"]["total_mb"] > 0
    assert "steps/s" in result.output


def test_bench_needs_exactly_one_target():
    from dbooth.util.errors import DboothError

    with pytest.raises(DboothError, match="either --config NAME or -w WORKSPACE"):
        measure.run_bench(measure.BenchRequest())


def test_derived_figures_from_measured_numbers():
    """Worked by hand: 2e12 FLOP a step at 3 steps/s is 6 TFLOP/s, 40% of a 15 TFLOP/s peak; the row runs 1.5x
    the base's 2 steps/s in 0.75x its 800 MB. Without a known peak there is no utilisation."""
    got = measure.derived_figures(steps_per_s=3.0, peak_memory_mb=600.0, flops_per_step=2e12, peak_tflops=15.0,
                                  base_steps_per_s=2.0, base_peak_memory_mb=800.0)
    assert got == pytest.approx({"flops_per_step": 2e12, "achieved_tflops": 6.0, "peak_tflops": 15.0,
                                 "utilization": 0.4, "speedup": 1.5, "memory_ratio": 0.75})
    off = measure.derived_figures(3.0, 600.0, 2e12, None, 2.0, 800.0)
    assert off["utilization"] is None and off["peak_tflops"] is None and off["achieved_tflops"] == pytest.approx(6.0)


@pytest.mark.slow
def test_reference_runner_times_optimizer_steps(tmp_path, bench_ws):
    """The side-by-side runner counts optimizer steps of any script and stops after the last one."""
    from dbooth.bench.reference import measure_reference

    script = tmp_path / "fake_train.py"
    script.write_text(
        "import sys, torch\n"
        "n = int(sys.argv[sys.argv.index('--max_train_steps') + 1])\n"
        "w = torch.nn.Parameter(torch.ones(3))\n"
        "opt = torch.optim.AdamW([w])\n"
        "for _ in range(n + 5):\n"
        "    w.sum().backward(); opt.step(); opt.zero_grad()\n"
        "raise SystemExit('ran past the last step')\n"
    )
    manifest = json.loads(json.dumps(__import__("dbooth.workspace.config", fromlist=["x"]).manifest_to_dict(bench_ws.manifest())))
    res = measure_reference(script, bench_ws, manifest, warmup=1, steps=3, precompute=True, python=sys.executable)
    assert "error" not in res, res
    assert len(res["step_seconds"]) == 3 and res["steps_per_s"] > 0 and res["peak_memory_mb"] > 0
    args = res["command"][4:]
    for flag in ("--with_prior_preservation", "--center_crop", "--pre_compute_text_embeddings"):
        assert flag in args
    assert args[args.index("--resolution") + 1] == "32"
    assert args[args.index("--max_train_steps") + 1] == "4"
    assert args[args.index("--mixed_precision") + 1] == "no"
    assert Path(args[args.index("--class_data_dir") + 1]) == bench_ws.class_dir


def test_workspace_bench_copies_images_and_keeps_settings(tmp_path, make_workspace):
    """``dbooth bench -w WS`` measures a copy: the user's workspace gets no runs/ and keeps its images."""
    src = make_workspace("corgi", **{"train.batch_size": 2, "prior.num_class_images": 3})
    ws = measure.make_workspace(tmp_path / "copy", "ignored", {}, num_instance=4, num_class=3, source=src)
    m = ws.manifest()
    assert m.train.batch_size == 2 and m.base_model == src.manifest().base_model
    assert m.train.checkpoint_every == 0 and m.train.validation_every == 0
    assert sorted(p.name for p in ws.instance_dir.iterdir()) == sorted(p.name for p in src.instance_dir.iterdir())
    assert len(list(ws.class_dir.iterdir())) == 3  # no class images in the source: drawn stand-ins
    assert not (src.root / "runs").exists() or not any((src.root / "runs").iterdir())


def test_the_drawn_workspace_gives_masked_loss_and_buckets_work(bench_ws):
    """Half the photos wide, a mask each, class images at the wide bucket too: the masked-loss and bucket rows
    change what the trainer does, while the base row trains square crops without masks as before."""
    from PIL import Image

    from dbooth.workspace.config import apply_overrides
    from dbooth.util.images import list_images, mask_file
    from dbooth.generate.class_images import shape_of
    from dbooth.util.reporting import Reporter
    from dbooth.training.inputs import gather_inputs

    photos = list_images(bench_ws.instance_dir)
    assert [Image.open(p).size for p in photos] == [(32, 32), (51, 32)] and all(mask_file(p).is_file() for p in photos)
    m = bench_ws.manifest()
    assert m.train.masked_loss is False and m.train.buckets is False
    base = gather_inputs(bench_ws, m, resume=False, reporter=Reporter())
    assert base.masks is None and all(Image.open(p).size == (32, 32) for p in base.class_paths)
    on = apply_overrides(m, {"train.masked_loss": True, "train.buckets": True})
    both = gather_inputs(bench_ws, on, resume=False, reporter=Reporter())
    assert both.masks is not None and all(both.masks)
    assert sorted({shape_of(Image.open(p).size, on) for p in both.class_paths}) == [(32, 32), (40, 24)]
    res = _train(bench_ws, {"train.masked_loss": True, "train.buckets": True}, steps=2)
    assert len(res["step_seconds"]) == 2 and all(loss == loss for loss in res["losses"])


def test_lora_reference_gets_the_lora_scripts_options(tmp_path, tiny_base):
    """train_dreambooth_lora.py: same rank, dropout and LoRA learning rate; a full configuration is refused."""
    from dbooth.bench.reference import reference_args, script_method
    from dbooth.workspace.config import manifest_to_dict
    from dbooth.util.errors import DboothError

    assert script_method(Path("x/train_dreambooth_lora.py")) == "lora"
    assert script_method(Path("x/train_dreambooth.py")) == "full"
    ws = measure.make_workspace(tmp_path / "lora", str(tiny_base), {**CONFIGS["tiny"].overrides, "train.method": "lora",
                                "train.lora.rank": 4, "train.lora.alpha": 4, "train.lora.dropout": 0.1},
                                num_instance=2, num_class=2)
    manifest = manifest_to_dict(ws.manifest())
    args = reference_args(ws, manifest, tmp_path / "out", 5, precompute=False, method="lora")
    assert args[args.index("--rank") + 1] == "4" and args[args.index("--lora_dropout") + 1] == "0.1"
    assert float(args[args.index("--learning_rate") + 1]) == ws.manifest().train.resolved_learning_rate()
    with pytest.raises(DboothError, match="train_dreambooth.py trains the full UNet .* train.method is lora"):
        reference_args(ws, manifest, tmp_path / "out", 5, precompute=False, method="full")
    manifest["train"]["lora"]["alpha"] = 8
    with pytest.raises(DboothError, match="alpha = rank; set train.lora.alpha=4"):
        reference_args(ws, manifest, tmp_path / "out", 5, precompute=False, method="lora")
