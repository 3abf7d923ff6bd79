"""FLUX.2 [klein] (step-distilled) and Z-Image (Turbo) end to end through the CLI, on tiny pipelines built in code:
init reads the family's sampling settings from the folder -> prior -> train (LoRA with prior; full) -> sample
-> merge-lora -> the exports a client reads, each loaded back by diffusers to the same outputs; an interrupted
run resumed equals an uninterrupted one; and a LoRA samples the same through dbooth's own view of it (base +
adapter, as training validates) as merged or exported (the "LoRA too weak on distilled bases" question)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dbooth.cli.app import app
from dbooth.families.tiny_lm import save_tiny_lm_pipeline
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest
from flow_cli import assert_resume_is_exact, invoke, latest_run, load_folder, runner, said, signature

TEXT = 32  # train.flow.max_sequence_length in these workspaces
KINDS = ("flux2-klein", "zimage")
CARDS = {"flux2-klein": (4, 1.0), "zimage": (9, 0.0), "flux2-klein-base": (50, 4.0), "zimage-base": (50, 4.0)}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-bases")
    return {kind: save_tiny_lm_pipeline(root / kind, kind) for kind in KINDS}




def _workspace(tmp_path, base, photos, kind, **overrides):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(base), "--images", str(photos))
    manifest = load_manifest(ws / "dbooth.yaml")
    assert manifest.train.resolution == 32 and manifest.sample.scheduler == "euler"
    assert (manifest.sample.steps, manifest.sample.guidance_scale) == CARDS[kind]
    write_manifest(ws / "dbooth.yaml", apply_overrides(manifest, {
        "prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 3, "train.checkpoint_every": 2,
        "train.validation_every": 3, "train.validation_images": 1, "sample.steps": 2,
        "train.flow.max_sequence_length": 32, **overrides}))
    invoke("prior", "-w", str(ws))
    assert len(list((ws / "class").glob("*.png"))) == 2
    return ws





@pytest.mark.parametrize("kind", KINDS)
def test_lora_with_prior_exports_to_the_loaders_that_read_it(kind, bases, tmp_path, photos):
    base = bases[kind]
    ws = _workspace(tmp_path, base, photos, kind)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--prior", "--lr", "1e-2")
    alpha = load_manifest(ws / "dbooth.yaml").train.lora.alpha
    assert alpha != 4  # every file must carry the run's alpha / rank
    run, info = latest_run(ws)
    assert (info["status"], info["family"], info["prediction_type"]) == ("complete", kind, "flow")
    assert info["options"]["flow"]["timestep_sampling"] == "uniform" and info["options"]["flow"]["guidance"] is None
    assert list((run / "validation").rglob("*.png"))

    reference = load_folder(base)
    reference.load_lora_weights(str(run / "final"))
    expected = signature(reference, TEXT)
    assert not torch.allclose(expected, signature(load_folder(base), TEXT), atol=1e-4)  # the LoRA does something

    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1")
    assert len(list((ws / "samples").rglob("*.png"))) == 1
    invoke("merge-lora", "-w", str(ws), "--out", str(tmp_path / "merged"))
    torch.testing.assert_close(signature(load_folder(tmp_path / "merged"), TEXT), expected, rtol=0, atol=1e-5)

    lora = tmp_path / "lora.safetensors"
    printed = invoke("export", "-w", str(ws), "--format", "lora", "--out", str(lora)).output
    assert "ComfyUI" in printed
    pipe = load_folder(base)
    pipe.load_lora_weights(str(lora))
    torch.testing.assert_close(signature(pipe, TEXT), expected, rtol=0, atol=1e-5)
    raw, mine = load_file(str(run / "final" / "pytorch_lora_weights.safetensors")), load_file(str(lora))
    module = next(k for k in mine if k.endswith("lora_A.weight"))[: -len(".lora_A.weight")]
    torch.testing.assert_close(mine[f"{module}.lora_B.weight"] @ mine[f"{module}.lora_A.weight"],
                               (alpha / 4) * raw[f"{module}.lora_B.weight"] @ raw[f"{module}.lora_A.weight"])

    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    torch.testing.assert_close(signature(load_folder(tmp_path / "folder"), TEXT), expected, rtol=0, atol=1e-5)
    for fmt in ("single-file", "lora-kohya"):  # no client reads an original layout dbooth could write: refused
        refused = runner.invoke(app, ["export", "-w", str(ws), "--format", fmt])
        assert refused.exit_code != 0 and "--format lora" in said(refused)


@pytest.mark.parametrize("kind", KINDS)
def test_full_fine_tuning(kind, bases, tmp_path, photos):
    ws = _workspace(tmp_path, bases[kind], photos, kind)
    invoke("train", "-w", str(ws), "--full", "--prior")
    run, info = latest_run(ws)
    assert info["status"] == "complete"
    final, untouched = load_folder(run / "final"), load_folder(bases[kind])
    a, b = final.transformer.state_dict(), untouched.transformer.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the transformer moved ...
    for name in ("vae", "text_encoder"):  # ... the language model and the VAE did not
        a, b = getattr(final, name).state_dict(), getattr(untouched, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1")
    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    torch.testing.assert_close(signature(load_folder(tmp_path / "folder"), TEXT), signature(final, TEXT), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(kind, bases, tmp_path, photos):
    assert_resume_is_exact(lambda name: _workspace(tmp_path / name, bases[kind], photos, kind))


@pytest.mark.parametrize("kind", ["flux2-klein-base", "zimage-base"])
def test_init_reads_the_base_releases_sampling_settings(kind, tmp_path, photos):
    base = save_tiny_lm_pipeline(tmp_path / kind, kind)
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(base), "--images", str(photos))
    manifest = load_manifest(ws / "dbooth.yaml")
    assert (manifest.sample.steps, manifest.sample.guidance_scale) == CARDS[kind]
    assert (manifest.prior.steps, manifest.prior.guidance_scale) == CARDS[kind]


def test_training_the_language_model_is_a_one_line_error(bases, tmp_path, photos):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(bases["zimage"]), "--images", str(photos))
    result = runner.invoke(app, ["train", "-w", str(ws), "--steps", "1", "--no-prior", "--train-text-encoder"])
    assert result.exit_code != 0 and "language-model text encoder stays frozen" in said(result)


def _latents(pipe, prompt, seed):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, num_inference_steps=2, guidance_scale=0.0, height=32, width=32, max_sequence_length=32,
                generator=torch.Generator().manual_seed(seed), output_type="latent").images


@pytest.mark.parametrize("kind", KINDS)
def test_a_lora_samples_the_same_trained_merged_and_exported(kind, bases, tmp_path, photos):
    """dbooth's own view of a LoRA run (the base with the adapter unfused: the validation images and `sample`)
    against the merged folder and the exported file in diffusers: the same sample, to float rounding."""
    from dbooth.families.loading import load_pipeline
    from dbooth.generate.sample import load_for_sampling
    from dbooth.workspace.folder import Run
    from dbooth.workspace.prompts import format_prompt

    ws = _workspace(tmp_path, bases[kind], photos, kind)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--lr", "1e-2", "--no-prior")
    run, _ = latest_run(ws)
    invoke("merge-lora", "-w", str(ws), "--out", str(tmp_path / "merged"))
    lora = tmp_path / "lora.safetensors"
    invoke("export", "-w", str(ws), "--format", "lora", "--out", str(lora))
    prompt = "a photo of sks dog"
    manifest = load_manifest(ws / "dbooth.yaml")
    trained = _latents(load_for_sampling(str(bases[kind]), Run(run)), prompt, 0)
    merged = _latents(load_pipeline(str(tmp_path / "merged")), prompt, 0)
    exported = load_pipeline(str(bases[kind]))
    exported.load_lora_weights(str(lora))
    exported = _latents(exported, prompt, 0)
    base = _latents(load_pipeline(str(bases[kind])), prompt, 0)
    effect = (trained - base).abs().max().item()
    gaps = [(trained - other).abs().max().item() for other in (merged, exported)]
    print(f"{kind}: LoRA effect on the sample {effect:.3g}; trained view vs merged {gaps[0]:.3g}, "
          f"vs exported {gaps[1]:.3g}")
    assert effect > 1e-3 and max(gaps) < 1e-4
    # the last validation image (the trained view during training, at the run's last step) is the merged model's
    image = next((run / "validation").rglob("p0-*.png"))
    seed = int(image.stem.split("-s")[1])
    s = manifest.sample
    text = format_prompt(manifest.train.validation_prompts[0], manifest.identifier, manifest.class_noun, where="test")
    again = load_pipeline(str(tmp_path / "merged"))(
        text, num_inference_steps=s.steps, guidance_scale=s.guidance_scale, height=32, width=32,
        max_sequence_length=32, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    pixels = np.abs(np.asarray(Image.open(image), dtype=np.int16) - np.asarray(again, dtype=np.int16)).max()
    print(f"{kind}: last validation image vs the merged model's, max pixel difference {pixels}")
    assert pixels <= 1
