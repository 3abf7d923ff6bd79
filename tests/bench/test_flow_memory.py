"""The flow families' memory estimate: the meta-device activation count agrees with real tensors, LoRA counts agree
with a hand computation and with what PEFT adds, and the figures move the way they must (resolution, checkpointing,
cached text embeddings). Only narrow models are ever built with real weights."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from dbooth.bench import components_flow as cf
from dbooth.bench.flow_activations import saved_activations, transformer_inputs
from dbooth.bench.flow_memory import lora_parameters, tensor_count
from dbooth.bench.flops import count_step_flops, static_memory_of
from dbooth.families import FLUX, SD3
from dbooth.workspace.config import Manifest, apply_overrides, manifest_to_dict

RANK = 8


def train_settings(**overrides) -> dict:
    base = {"train.method": "lora", "train.mixed_precision": "bf16", "train.resolution": 1024}
    sets = {**base, **{f"train.{k}": v for k, v in overrides.items()}}
    return manifest_to_dict(apply_overrides(Manifest(class_noun="dog"), sets))["train"]


@functools.lru_cache(maxsize=None)
def parts(name: str):
    """The meta models, built once per module (the estimate leaves them as it found them, bar the weight dtype)."""
    models = cf.meta_flow_models(name)
    return models["transformer"], models["vae"], {k: v for k, v in models.items() if k.startswith("text_encoder")}


# -- LoRA counts ----------------------------------------------------------------------------------------------------
def test_flux_attention_lora_by_hand():
    """A double block has 8 adapted 3072x3072 projections (image q, k, v, out; context q, k, v, out), a single block
    its q, k, v: rank x (in + out) each."""
    t, _, _ = parts("flux")
    targets = FLUX.lora_targets(["attention"])
    one = RANK * (3072 + 3072)
    assert lora_parameters(t.transformer_blocks[0], RANK, targets) == 8 * one
    assert lora_parameters(t.single_transformer_blocks[0], RANK, targets) == 3 * one
    assert lora_parameters(t, RANK, targets) == (19 * 8 + 38 * 3) * one


def test_sd35_medium_attention_lora_by_hand():
    """24 blocks of 8 adapted 1536x1536 projections, the last without the context's output (context_pre_only); the
    dual-attention blocks' second self-attention (attn2) is not in the preset."""
    t, _, _ = parts("sd35m")
    targets = SD3.lora_targets(["attention"])
    one = RANK * (1536 + 1536)
    assert lora_parameters(t.transformer_blocks[0], RANK, targets) == 8 * one
    assert lora_parameters(t.transformer_blocks[-1], RANK, targets) == 7 * one
    assert lora_parameters(t, RANK, targets) == (23 * 8 + 7) * one
    est = static_memory_of(*parts("sd35m"), train_settings(resolution=512), "cuda")
    assert est["trainable_parameters"] == (23 * 8 + 7) * one


def narrow_transformer(family):
    """Four heads of 64 (256 wide): real code paths at a size the CPU runs in a second."""
    torch.manual_seed(0)
    if family is SD3:
        return cf.build_transformer(cf.replace(cf.flow_shape("sd35m"), transformer=dict(
            cf.SD35_MEDIUM_TRANSFORMER, num_layers=3, num_attention_heads=4, joint_attention_dim=64,
            caption_projection_dim=256, pooled_projection_dim=32, pos_embed_max_size=32, dual_attention_layers=(0,))))
    return cf.build_transformer(cf.replace(cf.flow_shape("flux"), transformer=dict(
        cf.FLUX_DEV_TRANSFORMER, num_layers=2, num_single_layers=2, attention_head_dim=64, num_attention_heads=4,
        joint_attention_dim=64, pooled_projection_dim=32, axes_dims_rope=(16, 24, 24))))


def real_saved_bytes(model, family, train: dict, n: int) -> tuple[int, int]:
    """Bytes autograd saves in a real forward with the trainer's own adapters (float32, on weights in the weight
    dtype, under bf16 autocast for a bf16 run); and the adapters' size."""
    from dbooth.training.adapters import add_lora, lora_config
    from dbooth.workspace.schema import LoraConfig

    bf16 = train["mixed_precision"] == "bf16"
    model.to(torch.bfloat16 if bf16 else torch.float32).requires_grad_(False)
    add_lora(model, lora_config(LoraConfig(rank=RANK), family.lora_targets(["attention"])))
    adapters = [p for p in model.parameters() if p.requires_grad]
    for p in adapters:
        p.data = p.data.float()
    tokens = 333 if family is SD3 else 512
    inputs = transformer_inputs(model, family, n, train["resolution"], tokens, torch.float32, device="cpu")
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            value.normal_()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in params:
            seen[key] = t.untyped_storage()  # kept alive: a freed storage's address could be reused
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.autograd.graph.saved_tensors_hooks(
            pack, lambda t: t):
        model(**inputs)
    return sum(x.nbytes() for x in seen.values()), sum(p.numel() for p in adapters)


@pytest.mark.parametrize("precision", ["bf16", "no"])
@pytest.mark.parametrize("family", [SD3, FLUX], ids=["sd3", "flux"])
def test_meta_count_agrees_with_real_tensors(family, precision):
    train = train_settings(resolution=256, mixed_precision=precision)
    model = narrow_transformer(family)
    meta = copy.deepcopy(model).to("meta")
    real, adapters = real_saved_bytes(model, family, train, n=2)
    counted = saved_activations(meta, family, train, n=2, tokens=333 if family is SD3 else 512)
    assert abs(counted["plain"] - real) / real < 0.05, (counted, real)
    assert lora_parameters(meta, RANK, family.lora_targets(["attention"])) == adapters  # what PEFT really adds


# -- the estimate ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sd35m", "sd35l", "flux"])
def test_resolution_and_checkpointing_move_the_activations(name):
    low = static_memory_of(*parts(name), train_settings(resolution=512), "cuda", prior=True)
    high = static_memory_of(*parts(name), train_settings(resolution=1024), "cuda", prior=True)
    assert high["activations_plain_mb"] > 2.5 * low["activations_plain_mb"]  # 4x the image tokens, same text
    for est in (low, high):
        assert 0 < est["activations_checkpointed_mb"] < est["activations_plain_mb"] / 5
        assert est["peak_estimate_mb"] == est["total_mb"] + est["activations_plain_mb"]
    assert high["weights_mb"] == low["weights_mb"] and high["total_mb"] == low["total_mb"]
    ckpt = static_memory_of(*parts(name), train_settings(gradient_checkpointing=True), "cuda", prior=True)
    assert ckpt["activations_mb"] == ckpt["activations_checkpointed_mb"] == pytest.approx(
        high["activations_checkpointed_mb"])
    one = static_memory_of(*parts(name), train_settings(), "cuda", prior=False)
    assert one["activations_plain_mb"] == pytest.approx(high["activations_plain_mb"] / 2, rel=0.01)


def test_where_the_weights_are():
    """bf16 transformer and fp32 adapters on the GPU; the text encoders (T5 too) and VAE leave once their outputs are
    cached; on the CPU everything stays; host set-up holds every part in bf16."""
    t, vae, encoders = parts("flux")
    n_t, n_vae = tensor_count(t), tensor_count(vae)
    n_text = sum(tensor_count(te) for te in encoders.values())
    mb = 2**20
    gpu = static_memory_of(t, vae, encoders, train_settings(), "cuda")
    lora = gpu["trainable_parameters"]
    assert gpu["weights_mb"] * mb == n_t * 2 + lora * 4
    assert gpu["gradients_mb"] * mb == lora * 4 and gpu["optimizer_mb"] * mb == lora * 8
    uncached = static_memory_of(t, vae, encoders, train_settings(cache_text_embeddings=False), "cuda")
    assert uncached["weights_mb"] * mb == (n_t + n_text) * 2 + lora * 4
    cpu = static_memory_of(t, vae, encoders, train_settings(), "cpu")
    assert cpu["weights_mb"] * mb == (n_t + n_text + n_vae) * 2 + lora * 4 == cpu["host_setup_mb"] * mb
    t5 = tensor_count(encoders["text_encoder_2"])
    assert 9.4e9 < t5 * 2 < 9.6e9  # T5-XXL alone, in bf16
    clip_lora = static_memory_of(t, vae, encoders, train_settings(train_text_encoder=True), "cuda")
    clip_only = lora_parameters(encoders["text_encoder"], RANK, ["q_proj", "k_proj", "v_proj", "out_proj"])
    assert clip_lora["trainable_parameters"] == lora + clip_only  # T5 is never trained


def test_step_flops_of_flux_at_1024():
    """A LoRA step of 2 images, by hand: every token meets 12 d^2 weights per block (a double block's stream: q, k, v,
    out and a 4x MLP; a single block: q, k, v, the 4x MLP and the 5d-wide output), attention is 4 S^2 d per block;
    the backward to the activations doubles the matmuls and attention's is twice its forward."""
    flops = count_step_flops(*parts("flux"), train_settings(), prior=True)
    d, blocks, n, seq = 3072, 19 + 38, 2, 4096 + 512
    matmuls = 2 * 12 * d * d * seq * blocks * n
    attention = 4 * seq * seq * d * blocks * n
    assert flops["transformer"] == pytest.approx(2 * matmuls + 3 * attention, rel=0.02)
    assert set(flops) == {"transformer", "total"}


@pytest.mark.parametrize("kind", ["flux2-klein", "zimage"])
def test_language_model_families_get_weights_but_no_activation_count_yet(tmp_path, kind):
    """FLUX.2 [klein] and Z-Image: weights, adapters and host memory from their folders; activations and FLOPs say
    they are not counted rather than failing on a missing input."""
    from dbooth.bench.flops import static_memory, step_flops
    from dbooth.families.tiny_lm import save_tiny_lm_pipeline
    from dbooth.util.errors import DboothError

    base = str(save_tiny_lm_pipeline(tmp_path / "base", kind))
    est = static_memory(base, train_settings(resolution=64), "cuda", prior=True)
    assert est["family"] == kind and est["trainable_parameters"] > 0 and est["host_setup_mb"] > est["weights_mb"]
    assert "activations_mb" not in est and "peak_estimate_mb" not in est
    with pytest.raises(DboothError, match="not yet"):
        step_flops(base, train_settings(resolution=64), prior=True)
