"""kohya / AUTOMATIC1111 LoRA files: the names those tools use, read back by diffusers to the same model."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from export_fakes import ALPHA, RANK, local_loader, make_lora_run, max_diff, text_probe, unet_probe
from dbooth.export import export_run, lora_to_kohya
from dbooth.export.lora_file import LoraComponent, LoraFile


def test_key_names_follow_sd_scripts_for_sd1(lora_run):
    path = export_run(lora_run.run_dir, "lora-kohya")

    workspace = lora_run.run_dir.parent.parent.name  # the fixture's run folder is WS/runs/lora-run
    assert path == lora_run.run_dir / "export" / f"{workspace}-lora-run.safetensors"  # kohya's: no suffix
    tensors = load_file(str(path))
    unet_q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    unet_out = "lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_attn2_to_out_0"
    te_q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    for name in (unet_q, unet_out, te_q, "lora_te_text_model_encoder_layers_1_self_attn_out_proj"):
        assert tensors[f"{name}.lora_down.weight"].shape[0] == RANK
        assert tensors[f"{name}.lora_up.weight"].shape[1] == RANK
        assert tensors[f"{name}.alpha"].item() == ALPHA
    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in tensors)
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in tensors)
    adapted = [
        m for model in (lora_run.reference.unet, lora_run.reference.text_encoder) for m in model.modules()
        if hasattr(m, "lora_A")
    ]
    assert len(tensors) == 3 * len(adapted) == 3 * 40  # 32 UNet projections + 8 in the text encoder


@pytest.mark.slow
def test_diffusers_loads_it_to_the_same_model_as_the_diffusers_file(lora_run):
    kohya = export_run(lora_run.run_dir, "lora-kohya")
    plain = export_run(lora_run.run_dir, "lora")

    via_kohya = local_loader(str(lora_run.base_dir))
    via_kohya.load_lora_weights(str(kohya))
    via_plain = local_loader(str(lora_run.base_dir))
    via_plain.load_lora_weights(str(plain))

    unet_diff = max_diff(unet_probe(via_kohya.unet), unet_probe(via_plain.unet))
    ref_diff = max_diff(unet_probe(via_kohya.unet), unet_probe(lora_run.reference.unet))
    text_diff = max_diff(text_probe(via_kohya.text_encoder), text_probe(lora_run.reference.text_encoder))
    print(f"kohya vs diffusers file {unet_diff:.2e}, vs adapter: unet {ref_diff:.2e}, text {text_diff:.2e}")
    assert unet_diff < 1e-5 and ref_diff < 1e-5 and text_diff < 1e-5
    base = local_loader(str(lora_run.base_dir))
    assert max_diff(unet_probe(via_kohya.unet), unet_probe(base.unet)) > 1e-2  # the LoRA was really applied


def test_metadata_carries_kohya_and_dbooth_keys(lora_run):
    path = export_run(lora_run.run_dir, "lora-kohya", dtype="fp16")
    name = f"{lora_run.run_dir.parent.parent.name}-lora-run-fp16"

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_network_dim"] == str(RANK) and float(meta["ss_network_alpha"]) == ALPHA
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_v2"] == "False"
    assert meta["ss_sd_model_name"] == str(lora_run.base_dir)
    assert meta["ss_network_train_unet_only"] == "False"
    assert path.stem == name and meta["ss_output_name"] == name
    assert meta["dbooth.identifier"] == "sks" and meta["dbooth.instance_prompt"] == "a photo of sks dog"
    assert {d for k, d in dtypes.items() if not k.endswith(".alpha")} == {"F16"}
    assert {d for k, d in dtypes.items() if k.endswith(".alpha")} == {"F32"}
    assert f"<lora:{name}:1>" in meta["dbooth.usage"]
    card = path.with_suffix(".md").read_text()
    assert f"<lora:{name}:1>" in card and "kohya" in card and "sks dog" in card
    assert meta["dbooth.clients"] == "diffusers, ComfyUI, AUTOMATIC1111/Forge, kohya sd-scripts, InvokeAI"
    assert "ComfyUI: copy to ComfyUI/models/loras/" in meta["dbooth.load"]
    assert "- AUTOMATIC1111/Forge: copy to `stable-diffusion-webui/models/Lora/`" in card
    assert "note:" not in card


def test_unet_only_run_has_no_text_encoder_keys(tmp_path):
    run = make_lora_run(tmp_path, train_text_encoder=False)
    path = export_run(run.run_dir, "lora-kohya")
    with safe_open(str(path), "pt") as f:
        assert not any(k.startswith("lora_te") for k in f.keys())
        assert f.metadata()["ss_network_train_unet_only"] == "True"


@pytest.mark.parametrize(
    "config,expected_alpha",
    [
        ({"r": 4, "lora_alpha": 8}, 8.0),
        ({"r": 4, "lora_alpha": 8, "use_rslora": True}, 16.0),  # scale 8/sqrt(4) = 4 = alpha_k / 4
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {"to_q": 2}}, 2.0),
    ],
)
def test_alpha_reproduces_peft_scaling(config, expected_alpha):
    down, up = torch.ones(4, 8), torch.ones(8, 4)
    component = LoraComponent("unet", {"a.attn1.to_q": (down, up)}, config)
    lora = LoraFile(path=None, components={"unet": component}, file_metadata={})
    assert lora_to_kohya(lora)["lora_unet_a_attn1_to_q.alpha"].item() == expected_alpha
