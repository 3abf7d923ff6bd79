"""SD 3.5 and FLUX.1 (dev-style with guidance, schnell-style without) end to end through the CLI, on tiny
pipelines built in code: init reads the family's settings from the folder -> prior -> train (LoRA with prior
and the CLIP encoders, alpha != rank; full) -> sample -> merge-lora -> every export, each read back by
diffusers' own loaders to the same outputs; an interrupted run resumed equals an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dbooth.cli.app import app
from dbooth.families import family_of
from dbooth.families.tiny_flow import save_tiny_flow_pipeline
from dbooth.export.transformer_file import transformer_to_original
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest
from flow_cli import assert_resume_is_exact, invoke, latest_run, load_folder, runner, said, signature

TEXT = 16  # train.flow.max_sequence_length in these workspaces
KINDS = ("sd3", "flux", "flux-schnell")


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-bases")
    return {kind: save_tiny_flow_pipeline(root / kind, kind) for kind in KINDS}



def _workspace(tmp_path, base, photos, kind):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(base), "--images", str(photos))
    manifest = load_manifest(ws / "dbooth.yaml")
    assert manifest.train.resolution == 32 and manifest.sample.scheduler == "euler"
    assert (manifest.sample.steps, manifest.sample.guidance_scale) == {"sd3": (40, 4.5), "flux": (28, 3.5),
                                                                      "flux-schnell": (4, 0.0)}[kind]
    write_manifest(ws / "dbooth.yaml", apply_overrides(manifest, {
        "prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 3, "train.checkpoint_every": 2,
        "train.validation_every": 3, "train.validation_images": 1, "sample.steps": 2,
        "train.flow.max_sequence_length": 16}))
    invoke("prior", "-w", str(ws))
    assert len(list((ws / "class").glob("*.png"))) == 2
    return ws






@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_lora_with_prior_and_text_encoders_exports_to_every_loader(kind, bases, tmp_path, photos):
    base = bases[kind]
    ws = _workspace(tmp_path, base, photos, kind)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--train-text-encoder", "--prior", "--lr", "1e-2")
    manifest_alpha = load_manifest(ws / "dbooth.yaml").train.lora.alpha
    assert manifest_alpha != 4  # the run's alpha (8) differs from its rank: every file must carry the scale
    run, info = latest_run(ws)
    assert (info["status"], info["family"], info["prediction_type"]) == ("complete", family_of(load_folder(base)).name, "flow")
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
    invoke("export", "-w", str(ws), "--format", "lora", "--out", str(lora))
    pipe = load_folder(base)
    pipe.load_lora_weights(str(lora))
    torch.testing.assert_close(signature(pipe, TEXT), expected, rtol=0, atol=1e-5)
    _check_scale_is_in_the_weights(run / "final" / "pytorch_lora_weights.safetensors", lora, rank=4, alpha=manifest_alpha)

    if kind == "flux":  # BFL's fused layout: each fused linear's delta, sliced per part, is the trained part's
        kohya = tmp_path / "kohya.safetensors"
        invoke("export", "-w", str(ws), "--format", "lora-kohya", "--out", str(kohya))
        fused, trained = load_file(str(kohya)), load_file(str(run / "final" / "pytorch_lora_weights.safetensors"))
        assert any(k.startswith("lora_te1_") for k in fused)
        for bfl, module, rows in (("double_blocks_0_img_attn_qkv", "transformer_blocks.0.attn.to_k", slice(32, 64)),
                                  ("double_blocks_0_txt_attn_qkv", "transformer_blocks.0.attn.add_v_proj", slice(64, 96)),
                                  ("single_blocks_0_linear1", "single_transformer_blocks.0.attn.to_q", slice(0, 32)),
                                  ("double_blocks_0_img_attn_proj", "transformer_blocks.0.attn.to_out.0", slice(None))):
            down, up = fused[f"lora_unet_{bfl}.lora_down.weight"], fused[f"lora_unet_{bfl}.lora_up.weight"]
            delta = (fused[f"lora_unet_{bfl}.alpha"] / down.shape[0]) * up @ down
            a, b = trained[f"transformer.{module}.lora_A.weight"], trained[f"transformer.{module}.lora_B.weight"]
            torch.testing.assert_close(delta[rows], (manifest_alpha / 4) * b @ a)
        assert not fused["lora_unet_single_blocks_0_linear1.lora_up.weight"][96:].any()  # no MLP adapter trained
    else:
        refused = runner.invoke(app, ["export", "-w", str(ws), "--format", "lora-kohya"])
        assert refused.exit_code != 0 and "--format lora" in said(refused)

    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    torch.testing.assert_close(signature(load_folder(tmp_path / "folder"), TEXT), expected, rtol=0, atol=1e-5)
    single = tmp_path / "transformer.safetensors"
    printed = invoke("export", "-w", str(ws), "--format", "single-file", "--out", str(single)).output
    assert "Load Diffusion Model" in printed
    merged = load_folder(tmp_path / "folder")
    written = load_file(str(single))
    want = transformer_to_original(family_of(merged).name, merged.transformer)
    assert written.keys() == want.keys() and all(torch.equal(written[k], want[k]) for k in want)
    if kind == "sd3":  # diffusers reads it back (its FLUX reader assumes FLUX.1's 3072-wide blocks: see test_flux_layout)
        from diffusers import SD3Transformer2DModel

        back = SD3Transformer2DModel.from_single_file(str(single), config=str(base), subfolder="transformer",
                                                      local_files_only=True)
        assert all(torch.equal(back.state_dict()[k], v) for k, v in merged.transformer.state_dict().items())



def _check_scale_is_in_the_weights(trained, exported, *, rank: int, alpha: float):
    """A reader that ignores the metadata (ComfyUI) computes up @ down: that must be the trained scale x B A."""
    raw, mine = load_file(str(trained)), load_file(str(exported))
    key = next(k for k in mine if k.startswith("transformer.") and k.endswith("lora_A.weight"))
    module = key[: -len(".lora_A.weight")]
    down, up = raw[f"{module}.lora_A.weight"], raw[f"{module}.lora_B.weight"]
    got = mine[f"{module}.lora_B.weight"] @ mine[f"{module}.lora_A.weight"]
    torch.testing.assert_close(got, (alpha / rank) * up @ down)


@pytest.mark.parametrize("kind", ["sd3", "flux-schnell"])
def test_full_fine_tuning(kind, bases, tmp_path, photos):
    base = bases[kind]
    ws = _workspace(tmp_path, base, photos, kind)
    invoke("train", "-w", str(ws), "--full", "--train-text-encoder", "--prior")
    run, info = latest_run(ws)
    assert info["status"] == "complete"
    final, untouched = load_folder(run / "final"), load_folder(base)
    t5 = family_of(final).t5_name
    for name in ("transformer", "text_encoder"):  # every trained part moved ...
        a, b = getattr(final, name).state_dict(), getattr(untouched, name).state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a), name
    for name in ("vae", t5):  # ... T5 and the VAE did not
        a, b = getattr(final, name).state_dict(), getattr(untouched, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1")
    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    torch.testing.assert_close(signature(load_folder(tmp_path / "folder"), TEXT), signature(final, TEXT), rtol=0, atol=0)


def test_an_interrupted_flux_run_resumes_to_the_uninterrupted_result(bases, tmp_path, photos):
    assert_resume_is_exact(lambda name: _workspace(tmp_path / name, bases["flux"], photos, "flux"))


def test_flow_options_on_an_sd_base_and_sd_options_on_flux_are_one_line_errors(bases, tmp_path, photos):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(bases["flux-schnell"]), "--images", str(photos))
    result = runner.invoke(app, ["train", "-w", str(ws), "--steps", "1", "--no-prior", "--snr-gamma", "5"])
    assert result.exit_code != 0 and "train.snr_gamma: FLUX.1 trains by flow matching" in said(result)


def test_eval_scores_a_flux_lora_run_and_its_checkpoints(bases, tmp_path, photos):
    from tiny_encoders import save_tiny_clip, save_tiny_dino

    ws = _workspace(tmp_path, bases["flux"], photos, "flux")
    manifest = load_manifest(ws / "dbooth.yaml")
    write_manifest(ws / "dbooth.yaml", apply_overrides(manifest, {
        "eval.dino": str(save_tiny_dino(tmp_path / "dino")), "eval.clip": str(save_tiny_clip(tmp_path / "clip")),
        "eval.num_prompts": 1, "eval.images_per_prompt": 1, "eval.class_images": 1, "train.max_steps": 4}))
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--lr", "1e-2")
    invoke("eval", "-w", str(ws), "--checkpoints")
    run, info = latest_run(ws)
    data = json.loads((run / "eval.json").read_text())
    assert list(data["metrics"]) == ["base", "step-000002", "final"]
    assert data["metrics"]["final"] != data["metrics"]["base"]  # the LoRA changed the samples it was scored on
    assert json.loads((run / "run.json").read_text()).get("best_checkpoint")
