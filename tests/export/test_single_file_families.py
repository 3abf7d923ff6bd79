"""Single-file checkpoints for SD 2.x and SDXL: original names, read back exactly by diffusers' from_single_file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from dbooth.util.errors import DboothError
from dbooth.export import detect_single_file_layout, pipeline_to_original_state_dict, save_single_file
from dbooth.export.single_file import pipeline_layout
from dbooth.families.tiny import tiny_pipeline, tiny_sd2_pipeline, tiny_sdxl_pipeline

FAMILIES = {
    "sd2": (tiny_sd2_pipeline, StableDiffusionPipeline, ("unet", "vae", "text_encoder")),
    "sdxl": (tiny_sdxl_pipeline, StableDiffusionXLPipeline, ("unet", "vae", "text_encoder", "text_encoder_2")),
}


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}


def _read(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module", params=["sd2", "sdxl"])
def exported(request, tmp_path_factory):
    """A v-prediction model of the family written to one file, and a config folder with *other* weights,
    so that matching weights after loading can only have come from the file."""
    build, cls, parts = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    pipe = build(seed=0, prediction_type="v_prediction")
    build(seed=1).save_pretrained(root / "config")
    path = save_single_file(pipe, root / "model.safetensors")
    return SimpleNamespace(family=request.param, pipe=pipe, cls=cls, parts=parts, path=path, config=root / "config")


def test_from_single_file_reads_back_every_weight(exported):
    reloaded = exported.cls.from_single_file(str(exported.path), config=str(exported.config), local_files_only=True)
    other = exported.cls.from_pretrained(exported.config, local_files_only=True)

    for name in exported.parts:
        want, got = _weights(getattr(exported.pipe, name)), _weights(getattr(reloaded, name))
        assert set(got) == set(want), name
        unequal = [k for k in want if not torch.equal(want[k], got[k])]
        assert not unequal, f"{name}: {unequal[:5]}"
        assert any(not torch.equal(want[k], v) for k, v in _weights(getattr(other, name)).items()), name


def test_v_prediction_is_marked_in_keys_and_metadata(exported):
    tensors, meta = _read(exported.path)

    assert tensors["v_pred"].numel() == 0 and "ztsnr" not in tensors
    assert meta["modelspec.prediction_type"] == "v"
    assert meta["modelspec.architecture"] == {
        "sd2": "stable-diffusion-v2-768-v",
        "sdxl": "stable-diffusion-xl-v1-base",
    }[exported.family]
    assert meta["modelspec.resolution"] == "32x32"  # 16 latent px, VAE factor 2
    assert meta["modelspec.title"] == "model" and meta["modelspec.sai_model_spec"] == "1.0.0"


def test_sd2_text_encoder_is_openclip_with_its_last_block_as_identity(tmp_path):
    pipe = tiny_sd2_pipeline(seed=0)
    sd = pipeline_to_original_state_dict(pipe)

    assert {k.split(".")[0] for k in sd} == {"model", "first_stage_model", "cond_stage_model", "v_pred"}
    assert not any(k.startswith("cond_stage_model.transformer.") for k in sd)  # that is SD 1.x's CLIP
    te = {k.removeprefix("cond_stage_model.model."): v for k, v in sd.items() if k.startswith("cond_stage_model.")}
    hf = _weights(pipe.text_encoder)
    assert torch.equal(te["token_embedding.weight"], hf["embeddings.token_embedding.weight"])
    assert torch.equal(te["positional_embedding"], hf["embeddings.position_embedding.weight"])
    q, k, v = te["transformer.resblocks.1.attn.in_proj_weight"].chunk(3)
    assert torch.equal(q, hf["encoder.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(v, hf["encoder.layers.1.self_attn.v_proj.weight"])
    assert torch.equal(te["transformer.resblocks.0.mlp.c_proj.bias"], hf["encoder.layers.0.mlp.fc2.bias"])
    assert torch.equal(te["ln_final.weight"], hf["final_layer_norm.weight"])
    # two Hugging Face layers -> three OpenCLIP blocks, the last one adding nothing to the residual stream
    assert {key.split(".")[2] for key in te if key.startswith("transformer.")} == {"0", "1", "2"}
    for name in ("attn.out_proj.weight", "attn.out_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
        assert not te[f"transformer.resblocks.2.{name}"].any(), name
    assert torch.equal(te["text_projection"], torch.eye(32))
    assert sd["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 2  # linear projections, as SD 2.x


def test_sdxl_keys_follow_the_sgm_layout():
    pipe = tiny_sdxl_pipeline(seed=0)
    sd = pipeline_to_original_state_dict(pipe)

    assert {k.split(".")[0] for k in sd} == {"model", "first_stage_model", "conditioner"}
    unet = "model.diffusion_model."
    assert torch.equal(sd[unet + "label_emb.0.0.weight"], pipe.unet.add_embedding.linear_1.weight)
    assert torch.equal(sd[unet + "label_emb.0.2.bias"], pipe.unet.add_embedding.linear_2.bias)
    assert unet + "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight" in sd  # level 1: two layers
    assert not any(k.startswith((unet + "input_blocks.1.1.", unet + "input_blocks.2.1.")) for k in sd)  # level 0
    assert unet + "input_blocks.3.0.op.weight" in sd and unet + "output_blocks.2.2.conv.weight" in sd
    te1 = "conditioner.embedders.0.transformer.text_model."
    q = pipe.text_encoder.encoder.layers[1].self_attn.q_proj.weight
    assert torch.equal(sd[te1 + "encoder.layers.1.self_attn.q_proj.weight"], q)
    te2 = "conditioner.embedders.1.model."
    assert torch.equal(sd[te2 + "text_projection"], pipe.text_encoder_2.text_projection.weight.T)
    assert sd[te2 + "text_projection"].shape == (48, 32)
    assert sd[te2 + "transformer.resblocks.1.attn.in_proj_weight"].shape == (3 * 48, 48)
    assert not any(k.startswith(te2 + "transformer.resblocks.2.") for k in sd)  # SDXL keeps all its layers
    assert "v_pred" not in sd  # epsilon


def test_zero_terminal_snr_is_marked_for_v_prediction():
    pipe = tiny_sdxl_pipeline(prediction_type="v_prediction")
    pipe.scheduler.register_to_config(rescale_betas_zero_snr=True)
    assert {"v_pred", "ztsnr"} <= set(pipeline_to_original_state_dict(pipe))
    assert "v_pred" not in pipeline_to_original_state_dict(pipe, prediction_type="epsilon")


def test_epsilon_checkpoint_metadata(tmp_path):
    path = save_single_file(tiny_sdxl_pipeline(), tmp_path / "x.safetensors", metadata={"modelspec.title": "mine"})
    tensors, meta = _read(path)
    assert "v_pred" not in tensors
    assert meta["modelspec.prediction_type"] == "epsilon" and meta["modelspec.title"] == "mine"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"


def test_pipeline_layout_is_detected():
    assert pipeline_layout(tiny_pipeline()) == "sd1"
    assert pipeline_layout(tiny_sd2_pipeline()) == "sd2"
    assert pipeline_layout(tiny_sdxl_pipeline()) == "sdxl"


def test_a_layout_that_does_not_fit_the_pipeline_is_refused(tmp_path):
    with pytest.raises(DboothError, match="two text encoders"):
        pipeline_to_original_state_dict(tiny_pipeline(), "sdxl")
    with pytest.raises(DboothError, match="needs one"):
        save_single_file(tiny_sdxl_pipeline(), tmp_path / "x.safetensors", layout="sd2")
    with pytest.raises(DboothError, match="unknown single-file layout"):
        pipeline_to_original_state_dict(tiny_pipeline(), "sd3")
    with pytest.raises(DboothError, match="prediction type"):
        pipeline_to_original_state_dict(tiny_pipeline(), prediction_type="sample")


@pytest.mark.parametrize(
    "build,layout", [(tiny_pipeline, "sd1"), (tiny_sd2_pipeline, "sd2"), (tiny_sdxl_pipeline, "sdxl")]
)
def test_checkpoint_layout_is_detected_from_key_names(build, layout):
    assert detect_single_file_layout(pipeline_to_original_state_dict(build())) == layout


@pytest.mark.parametrize(
    "keys,layout",
    [
        (["conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.out.2.weight"], "sd2"),  # sgm SD2
        (["model.diffusion_model.label_emb.0.0.weight"], "sdxl"),  # UNet only
        (["conditioner.embedders.1.model.ln_final.weight"], "sdxl"),
    ],
)
def test_other_key_sets_are_detected(keys, layout):
    assert detect_single_file_layout(keys) == layout


@pytest.mark.parametrize(
    "keys,message",
    [
        (["conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"], "refiner"),
        (["model.diffusion_model.out.2.weight"], "cannot tell"),
    ],
)
def test_undetectable_layouts_are_refused(keys, message):
    with pytest.raises(DboothError, match=message):
        detect_single_file_layout(keys)


def _meta_pipeline(family: str) -> SimpleNamespace:
    """Real SD 1.5 / 2.1 / SDXL base shapes on the meta device (no memory)."""
    with init_empty_weights():
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
        )
        if family == "sdxl":
            unet = UNet2DConditionModel(
                sample_size=128,
                block_out_channels=(320, 640, 1280),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10),
                attention_head_dim=(5, 10, 20),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816,
                cross_attention_dim=2048,
            )
            te = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12))
            te2 = CLIPTextModelWithProjection(
                CLIPTextConfig(
                    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                    projection_dim=1280, hidden_act="gelu",
                )
            )
            return SimpleNamespace(unet=unet, vae=vae, text_encoder=te, text_encoder_2=te2, scheduler=None)
        sd2 = family == "sd2"
        unet = UNet2DConditionModel(
            sample_size=96 if sd2 else 64,
            cross_attention_dim=1024 if sd2 else 768,
            attention_head_dim=(5, 10, 20, 20) if sd2 else 8,
            use_linear_projection=sd2,
        )
        config = CLIPTextConfig(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu"
        ) if sd2 else CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12)
        return SimpleNamespace(unet=unet, vae=vae, text_encoder=CLIPTextModel(config), scheduler=None)


@pytest.mark.parametrize("family,model_type", [("sd1", "v1"), ("sd2", "v2"), ("sdxl", "xl_base")])
def test_diffusers_recognises_the_family_of_full_size_checkpoints(family, model_type):
    """Without a config folder, diffusers picks the model type from a few keys and shapes of real checkpoints."""
    sd = pipeline_to_original_state_dict(_meta_pipeline(family))
    assert infer_diffusers_model_type(sd) == model_type
    assert detect_single_file_layout(sd) == family
    if family == "sd2":  # ViT-H: 24 OpenCLIP blocks, of which diffusers reads the first 23
        assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in sd
        assert "cond_stage_model.model.transformer.resblocks.24.attn.in_proj_weight" not in sd
        assert sd["cond_stage_model.model.text_projection"].shape == (1024, 1024)
    if family == "sdxl":
        assert len([k for k in sd if k.startswith("model.diffusion_model.")]) == 1680  # as in SDXL base 1.0
        assert sd["conditioner.embedders.1.model.text_projection"].shape == (1280, 1280)
