"""kohya LoRA files for SD 2.x and SDXL: sd-scripts' names, read back by diffusers to the trained model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from export_fakes import ALPHA, RANK, load_fused, make_family_lora, merged_weights, weight_diff
from dbooth.util.errors import DboothError
from dbooth.export import lora_to_kohya, read_lora_file, save_kohya_lora
from dbooth.export.kohya import kohya_metadata
from dbooth.families.tiny import tiny_sdxl_pipeline

TOL = 1e-5
# every kind of UNet module sd-scripts can adapt: attention, transformer projections and MLP, resnets,
# down/up-samplers, the time and size embeddings, conv_in / conv_out
ALL_UNET_TARGETS = [
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "time_emb_proj", "conv_shortcut", "conv", "linear_1", "linear_2", "conv_in", "conv_out",
]


def _kohya_file(lora, tmp_path, family, **kwargs):
    return save_kohya_lora(read_lora_file(lora.path), tmp_path / "kohya.safetensors", family=family, **kwargs)


def _assert_fused_like_reference(lora, pipe, parts):
    for name in parts:
        diff = weight_diff(getattr(pipe, name), merged_weights(getattr(lora.reference, name)))
        assert diff < TOL, f"{name}: {diff:.2e}"


def test_sdxl_names_follow_sd_scripts(sdxl_lora, tmp_path):
    tensors = load_file(str(_kohya_file(sdxl_lora, tmp_path, "sdxl", unet=sdxl_lora.reference.unet)))

    names = {k.split(".")[0] for k in tensors}
    for name in (
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",  # down level 1, first layer
        "lora_unet_input_blocks_5_1_transformer_blocks_1_attn2_to_out_0",  # its second transformer layer
        "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k",
        "lora_unet_output_blocks_2_1_transformer_blocks_1_attn2_to_v",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        "lora_te2_text_model_encoder_layers_1_self_attn_out_proj",
    ):
        assert name in names, name
        assert tensors[f"{name}.lora_down.weight"].shape[0] == RANK
        assert tensors[f"{name}.alpha"].item() == ALPHA
    assert not any("down_blocks" in n or "up_blocks" in n or "mid_block" in n for n in names)
    assert {n.split("_")[1] for n in names} == {"unet", "te1", "te2"}
    adapted = [m for part in ("unet", "text_encoder", "text_encoder_2")
               for m in getattr(sdxl_lora.reference, part).modules() if hasattr(m, "lora_A")]
    assert len(names) == len(adapted)


@pytest.mark.slow
def test_sdxl_kohya_file_loads_like_the_diffusers_file(sdxl_lora, tmp_path):
    kohya = _kohya_file(sdxl_lora, tmp_path, "sdxl", unet=sdxl_lora.reference.unet.config)  # a config is enough

    via_kohya, via_diffusers = load_fused(sdxl_lora, kohya), load_fused(sdxl_lora, sdxl_lora.path)
    parts = ("unet", "text_encoder", "text_encoder_2")
    for name in parts:
        assert weight_diff(getattr(via_kohya, name), getattr(via_diffusers, name).state_dict()) < TOL, name
    _assert_fused_like_reference(sdxl_lora, via_kohya, parts)
    base = sdxl_lora.pipeline_class.from_pretrained(sdxl_lora.base_dir, local_files_only=True)
    assert weight_diff(via_kohya.text_encoder_2, base.text_encoder_2.state_dict()) > 1e-2  # really applied


@pytest.mark.slow
def test_sdxl_names_cover_every_unet_module_kind(tmp_path):
    lora = make_family_lora(tmp_path, tiny_sdxl_pipeline, unet_targets=ALL_UNET_TARGETS)
    kohya = _kohya_file(lora, tmp_path, "sdxl", unet=lora.reference.unet)
    names = {k.split(".")[0] for k in load_file(str(kohya))}

    for name in (
        "lora_unet_input_blocks_0_0",  # conv_in
        "lora_unet_time_embed_0",
        "lora_unet_label_emb_0_2",
        "lora_unet_input_blocks_1_0_in_layers_2",
        "lora_unet_input_blocks_3_0_op",
        "lora_unet_input_blocks_4_0_skip_connection",
        "lora_unet_input_blocks_4_1_proj_in",
        "lora_unet_middle_block_2_emb_layers_1",
        "lora_unet_output_blocks_2_2_conv",  # upsampler after an attention
        "lora_unet_output_blocks_5_0_out_layers_3",
        "lora_unet_out_2",  # conv_out
    ):
        assert name in names, name
    # diffusers maps all of these back to the right modules (its load of the diffusers-format file of this
    # target mix drops the attention LoRAs in diffusers 0.42.1, so the reference is the live adapter)
    _assert_fused_like_reference(lora, load_fused(lora, kohya), ("unet",))


def test_sd2_kohya_file_uses_diffusers_block_names_and_loads_back(sd2_lora, tmp_path):
    kohya = _kohya_file(sd2_lora, tmp_path, "sd2")
    names = {k.split(".")[0] for k in load_file(str(kohya))}
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in names
    assert "lora_te_text_model_encoder_layers_1_self_attn_v_proj" in names

    via_kohya, via_diffusers = load_fused(sd2_lora, kohya), load_fused(sd2_lora, sd2_lora.path)
    for name in ("unet", "text_encoder"):
        assert weight_diff(getattr(via_kohya, name), getattr(via_diffusers, name).state_dict()) < TOL, name
    _assert_fused_like_reference(sd2_lora, via_kohya, ("unet", "text_encoder"))


@pytest.mark.parametrize(
    "family,prediction,version,v2,architecture",
    [
        ("sd1", "epsilon", "sd_v1", "False", "stable-diffusion-v1/lora"),
        ("sd2", "epsilon", "sd_v2", "True", "stable-diffusion-v2-512/lora"),
        ("sd2", "v_prediction", "sd_v2_v", "True", "stable-diffusion-v2-768-v/lora"),
        ("sdxl", "epsilon", "sdxl_base_v1-0", "False", "stable-diffusion-xl-v1-base/lora"),
        ("sdxl", "v_prediction", "sdxl_base_v1-0", "False", "stable-diffusion-xl-v1-base/lora"),
    ],
)
def test_metadata_names_the_family(sdxl_lora, family, prediction, version, v2, architecture):
    meta = kohya_metadata(
        read_lora_file(sdxl_lora.path), base_model="b", output_name="o", steps=1, comment="c",
        family=family, prediction_type=prediction,
    )
    assert meta["ss_base_model_version"] == version and meta["ss_v2"] == v2
    assert meta["ss_v_parameterization"] == str(prediction == "v_prediction")
    assert meta["modelspec.architecture"] == architecture
    assert meta["modelspec.prediction_type"] == ("v" if prediction == "v_prediction" else "epsilon")
    assert meta["ss_network_train_unet_only"] == "False"  # text_encoder_2 counts as a text encoder


def test_sdxl_unet_names_need_the_unet(sdxl_lora):
    lora = read_lora_file(sdxl_lora.path)
    with pytest.raises(DboothError, match="base UNet"):
        lora_to_kohya(lora, "sdxl")
    with pytest.raises(DboothError, match="no text_encoder_2"):
        lora_to_kohya(lora, "sd1")
    with pytest.raises(DboothError, match="unknown model family"):
        lora_to_kohya(lora, "sd9")  # a name no family has (sd3 is one now)


def test_text_encoder_2_is_read_from_diffusers_files(sdxl_lora):
    lora = read_lora_file(sdxl_lora.path)
    te2 = lora.components["text_encoder_2"]
    assert te2.config["lora_alpha"] == ALPHA and te2.config["r"] == RANK
    assert "text_model.encoder.layers.0.self_attn.q_proj" in te2.modules
    module = sdxl_lora.reference.text_encoder_2.text_model.encoder.layers[0].self_attn.q_proj
    assert torch.equal(te2.modules["text_model.encoder.layers.0.self_attn.q_proj"][1], module.lora_B["default"].weight)
