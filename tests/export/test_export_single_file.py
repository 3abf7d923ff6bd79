"""Single-file checkpoints: original SD key names, read back exactly by diffusers' from_single_file."""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from export_fakes import local_loader, write_run_json
from dbooth.util.errors import DboothError
from dbooth.export import export_run, pipeline_to_original_state_dict, save_single_file
from dbooth.families.ldm_layout import unet_module_map, unet_to_original, vae_to_original
from dbooth.families.tiny import tiny_pipeline


def _load_single_file(path, config_dir, **kwargs):
    return StableDiffusionPipeline.from_single_file(str(path), config=str(config_dir), local_files_only=True, **kwargs)


def _assert_same_weights(expected: StableDiffusionPipeline, actual: StableDiffusionPipeline):
    for name in ("unet", "vae", "text_encoder"):
        want, got = getattr(expected, name).state_dict(), getattr(actual, name).state_dict()
        want = {k: v for k, v in want.items() if not k.endswith("position_ids")}
        got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
        assert set(want) == set(got), name
        unequal = [k for k in want if not torch.equal(want[k], got[k].to(want[k].dtype))]
        assert not unequal, f"{name}: {unequal[:5]}"


def test_full_run_round_trips_through_from_single_file(full_run):
    path = export_run(full_run.run_dir, "single-file")

    name = f"{full_run.run_dir.parent.parent.name}-full-run.safetensors"  # the workspace's name, then the run's
    assert path == full_run.run_dir / "export" / name
    reloaded = _load_single_file(path, full_run.run_dir / "final")
    _assert_same_weights(full_run.reference, reloaded)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["dbooth.identifier"] == "sks" and meta["dbooth.class_noun"] == "dog"
    assert meta["dbooth.method"] == "full" and meta["dbooth.steps"] == "800"
    assert {k.split(".")[0] for k in keys} == {"model", "first_stage_model", "cond_stage_model"}
    card = path.with_suffix(".md").read_text()
    assert "sks dog" in card
    assert "- ComfyUI: copy to `ComfyUI/models/checkpoints/`, pick it in Load Checkpoint" in card
    assert meta["dbooth.clients"] == "diffusers, ComfyUI, AUTOMATIC1111/Forge, kohya sd-scripts, InvokeAI"
    assert f'from_single_file("{name}")' in meta["dbooth.load"]


@pytest.mark.slow
def test_lora_run_is_merged_before_writing(lora_run, tmp_path):
    out = tmp_path / "m.safetensors"
    path = export_run(lora_run.run_dir, "single-file", base_pipeline_loader=local_loader, out=out)
    merged = export_run(lora_run.run_dir, "diffusers", base_pipeline_loader=local_loader, out=tmp_path / "merged")

    reloaded = _load_single_file(path, lora_run.base_dir)
    _assert_same_weights(StableDiffusionPipeline.from_pretrained(merged, local_files_only=True), reloaded)
    base = local_loader(str(lora_run.base_dir))
    q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(reloaded.unet.state_dict()[q], base.unet.state_dict()[q])


@pytest.mark.parametrize("dtype,torch_dtype,tag", [("fp16", torch.float16, "F16"), ("bf16", torch.bfloat16, "BF16")])
def test_dtype_is_honoured(full_run, dtype, torch_dtype, tag):
    path = export_run(full_run.run_dir, "single-file", dtype=dtype)

    assert path.name == f"{full_run.run_dir.parent.parent.name}-full-run-{dtype}.safetensors"
    with safe_open(str(path), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {tag}
        assert f.metadata()["dbooth.dtype"] == dtype
    reloaded = _load_single_file(path, full_run.run_dir / "final", dtype=torch_dtype)
    ref_unet = full_run.reference.unet.state_dict()
    for key, value in reloaded.unet.state_dict().items():
        assert torch.equal(value, ref_unet[key].to(torch_dtype)), key


def test_other_block_configurations_round_trip(tmp_path):
    """Three levels, two layers per block, attention in the middle: nothing about SD1.5's shape is assumed."""
    pipe = tiny_pipeline(seed=3)
    pipe.unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(16, 32, 32),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    save_single_file(pipe, tmp_path / "x.safetensors")
    _assert_same_weights(pipe, _load_single_file(tmp_path / "x.safetensors", folder))


def _sd1_reference_unet_map() -> dict[str, str]:
    """SD1.x's diffusers -> ldm module names, written out for its fixed 4-level, 2-layer structure."""
    m = {}
    for i in range(4):
        for j in range(2):
            m[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{3 * i + j + 1}.0"
            if i < 3:
                m[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{3 * i + j + 1}.1"
        for j in range(3):
            m[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{3 * i + j}.0"
            if i > 0:
                m[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{3 * i + j}.1"
        if i < 3:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{3 * (i + 1)}.0.op"
            m[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.conv"
    m["mid_block.attentions.0"] = "middle_block.1"
    m["mid_block.resnets.0"] = "middle_block.0"
    m["mid_block.resnets.1"] = "middle_block.2"
    return m


def test_sd1_architecture_gets_exactly_sd1_names():
    with init_empty_weights():  # real SD1.x shapes, no memory
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
        )
    ours = unet_module_map(unet)
    for diffusers_name, ldm_name in _sd1_reference_unet_map().items():
        prefix = diffusers_name if diffusers_name in ours else f"{diffusers_name}.norm1"
        assert ours[prefix].startswith(ldm_name), (diffusers_name, ours[prefix], ldm_name)

    unet_keys, vae_sd = unet_to_original(unet), vae_to_original(vae)
    assert len(unet_keys) == 686 and len(vae_sd) == 248  # the counts in SD1.x checkpoints
    for key in (
        "time_embed.0.weight",
        "input_blocks.0.0.weight",
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.4.0.skip_connection.weight",
        "input_blocks.4.0.emb_layers.1.weight",
        "input_blocks.11.0.out_layers.3.weight",
        "middle_block.1.proj_in.weight",
        "middle_block.2.in_layers.0.weight",
        "output_blocks.2.1.conv.weight",
        "output_blocks.5.2.conv.weight",
        "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight",
        "out.0.weight",
        "out.2.weight",
    ):
        assert key in unet_keys, key
    for key in (
        "encoder.down.0.downsample.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.norm_out.weight",
        "decoder.up.3.upsample.conv.weight",
        "decoder.up.0.block.2.conv2.weight",
        "decoder.mid.block_2.norm1.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
    ):
        assert key in vae_sd, key
    assert "decoder.up.0.upsample.conv.weight" not in vae_sd
    assert vae_sd["encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert vae_sd["decoder.mid.attn_1.proj_out.weight"].shape == (512, 512, 1, 1)


def test_text_encoder_keys_use_the_clip_text_model_prefix(full_run):
    keys = pipeline_to_original_state_dict(full_run.reference)
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in keys
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in keys


def test_saved_file_holds_exactly_the_converted_tensors(full_run, tmp_path):
    save_single_file(full_run.reference, tmp_path / "x.safetensors", metadata={"k": "v"})
    saved = load_file(str(tmp_path / "x.safetensors"))
    expected = pipeline_to_original_state_dict(full_run.reference)
    assert set(saved) == set(expected)
    assert all(torch.equal(saved[k], expected[k].contiguous()) for k in expected)


def test_full_run_needs_a_complete_final_folder(tmp_path):
    run_dir = tmp_path / "runs" / "broken"
    write_run_json(run_dir, method="full", base_model="builtin:shapes", train_text_encoder=False, lora=None)
    with pytest.raises(DboothError, match="final/model_index.json"):
        export_run(run_dir, "single-file")
