"""SD 3.5- and FLUX.1-shaped components with random weights, built from the published configs alone.

The configs below are the published ``config.json`` values of stabilityai/stable-diffusion-3.5-medium and -large
and black-forest-labs/FLUX.1-dev, typed out: MMDiT transformers of 2.47B (Medium: 2.24B parameters and a 226M
384x384 position table, a buffer) and 8.15B (Large: 8.06B + 90M), FLUX's 11.90B double/single-stream transformer,
their 16-channel VAEs (84M), and the text encoders CLIP ViT-L/14 (123M), OpenCLIP ViT-bigG/14 (695M, SD 3.5 only)
and the T5 v1.1 XXL encoder (4.76B). Built on the meta device they cost nothing, which is how tests and the static
memory estimate use them.

As in ``components``, only the tokenizers are stand-ins built offline from a word list; the embedding tables keep
the published vocabulary sizes (49408 CLIP, 32128 T5), so parameter counts are exact and every token id a stand-in
tokenizer produces is in range.

``save_flow_pipeline`` writes a random-weight pipeline folder one component at a time, each built directly in
bfloat16 and released before the next: SD 3.5 Medium-shaped is ~16.3 GB on disk, of which the T5 encoder is 9.5 GB.
"""

from __future__ import annotations

import contextlib
import gc
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dbooth.bench.components import BENCH_WORDS, SD15_TEXT, SD15_VAE
from dbooth.bench.components_sdxl import SDXL_TEXT_2
from dbooth.bench.flow_memory import tensor_count

CLIP_L_TEXT = dict(SD15_TEXT)  # OpenAI CLIP ViT-L/14's text tower: 768 wide, 12 layers, quick_gelu, projection 768
CLIP_G_TEXT = dict(SDXL_TEXT_2)  # OpenCLIP ViT-bigG/14's: 1280 wide, 32 layers, gelu, projection 1280

T5_XXL = dict(  # google/t5-v1_1-xxl, the encoder half (T5EncoderModel): SD 3.5's text_encoder_3, FLUX's text_encoder_2
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.1,
    tie_word_embeddings=False,
    is_encoder_decoder=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)

SD35_MEDIUM_TRANSFORMER = dict(  # MMDiT-X: self-attention beside the joint attention in blocks 0-12
    sample_size=128,  # 1024 px / 8
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,  # 1536 wide
    joint_attention_dim=4096,  # T5-XXL's width; CLIP-L + CLIP-G (2048) are zero-padded to it
    caption_projection_dim=1536,
    pooled_projection_dim=2048,  # CLIP-L's 768 + CLIP-G's 1280 projected outputs
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
    qk_norm="rms_norm",
)

SD35_LARGE_TRANSFORMER = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=38,
    attention_head_dim=64,
    num_attention_heads=38,  # 2432 wide
    joint_attention_dim=4096,
    caption_projection_dim=2432,
    pooled_projection_dim=2048,
    pos_embed_max_size=192,
    dual_attention_layers=(),
    qk_norm="rms_norm",
)

FLUX_DEV_TRANSFORMER = dict(  # 19 double-stream (joint) blocks, then 38 single-stream blocks, 3072 wide
    patch_size=1,  # on latents already packed into 2x2 patches: 16 channels x 4 = in_channels 64
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,  # CLIP-L's pooled output
    guidance_embeds=True,  # dev is guidance-distilled; schnell has False
    axes_dims_rope=(16, 56, 56),
)

# SD's VAE architecture with 16 latent channels and no quant convolutions; latents are (z - shift) * scale
SD3_VAE = {**SD15_VAE, "latent_channels": 16, "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609,
           "use_quant_conv": False, "use_post_quant_conv": False, "force_upcast": True}
FLUX_VAE = {**SD3_VAE, "scaling_factor": 0.3611, "shift_factor": 0.1159}

SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                      base_image_seq_len=256, max_image_seq_len=4096)

_SD3_ENCODERS = (("text_encoder", "CLIPTextModelWithProjection", CLIP_L_TEXT),
                 ("text_encoder_2", "CLIPTextModelWithProjection", CLIP_G_TEXT),
                 ("text_encoder_3", "T5EncoderModel", T5_XXL))
_FLUX_ENCODERS = (("text_encoder", "CLIPTextModel", CLIP_L_TEXT), ("text_encoder_2", "T5EncoderModel", T5_XXL))


@dataclass(frozen=True)
class FlowShape:
    """One published model's shapes: what the pipeline folder holds, by pipeline attribute."""

    name: str  # the bench's model name: sd35m | sd35l | flux
    title: str
    family: str  # dbooth.families name: sd3 | flux
    pipeline: str  # diffusers pipeline class
    transformer_class: str
    transformer: dict
    vae: dict
    encoders: tuple  # (pipeline attribute, transformers class, config) per text encoder, T5 last
    scheduler: dict

    @property
    def t5_name(self) -> str:
        return self.encoders[-1][0]


SHAPES: dict[str, FlowShape] = {s.name: s for s in [
    FlowShape("sd35m", "SD 3.5 Medium", "sd3", "StableDiffusion3Pipeline", "SD3Transformer2DModel",
              SD35_MEDIUM_TRANSFORMER, SD3_VAE, _SD3_ENCODERS, SD3_SCHEDULER),
    FlowShape("sd35l", "SD 3.5 Large", "sd3", "StableDiffusion3Pipeline", "SD3Transformer2DModel",
              SD35_LARGE_TRANSFORMER, SD3_VAE, _SD3_ENCODERS, SD3_SCHEDULER),
    FlowShape("flux", "FLUX.1-dev", "flux", "FluxPipeline", "FluxTransformer2DModel",
              FLUX_DEV_TRANSFORMER, FLUX_VAE, _FLUX_ENCODERS, FLUX_SCHEDULER),
]}


def flow_shape(name: str) -> FlowShape:
    return SHAPES[name]


def small_shape(shape: FlowShape, layers: int = 2) -> FlowShape:
    """The same widths with ``layers`` blocks per stack (T5 and CLIP too): the loader path at a size tests afford."""
    t = dict(shape.transformer, num_layers=layers)
    if "num_single_layers" in t:
        t["num_single_layers"] = layers
    if t.get("dual_attention_layers"):
        t["dual_attention_layers"] = tuple(range(min(layers, len(t["dual_attention_layers"]))))
    encoders = tuple((attr, cls, {**cfg, ("num_layers" if "d_model" in cfg else "num_hidden_layers"): layers})
                     for attr, cls, cfg in shape.encoders)
    return replace(shape, name=shape.name + "-small", transformer=t, encoders=encoders)


def flow_tokenizers(shape: FlowShape) -> dict:
    """Offline stand-ins by pipeline attribute: CLIP word tokenizers (77 tokens; OpenCLIP's pads with '!') and
    a T5 tokenizer (512 tokens)."""
    from dbooth.families.tokenizer import build_t5_tokenizer, build_word_tokenizer

    length = CLIP_L_TEXT["max_position_embeddings"]
    out = {"tokenizer": build_word_tokenizer(BENCH_WORDS, model_max_length=length)}
    if len(shape.encoders) == 3:  # SD 3.5: CLIP-G's tokenizer_2
        out["tokenizer_2"] = build_word_tokenizer(BENCH_WORDS, model_max_length=length)
        out["tokenizer_2"].pad_token = "!"
    t5_attr = "tokenizer_" + str(len(shape.encoders))
    out[t5_attr] = build_t5_tokenizer(BENCH_WORDS, model_max_length=512)
    return out


def build_transformer(shape: FlowShape):
    import diffusers

    return getattr(diffusers, shape.transformer_class)(**shape.transformer)


def build_vae(shape: FlowShape):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**shape.vae)


def build_encoder(class_name: str, config: dict, tokenizer=None):
    """A CLIP text tower (ids of the stand-in tokenizer's special tokens) or the T5 encoder."""
    import transformers

    cls = getattr(transformers, class_name)
    if class_name == "T5EncoderModel":
        return cls(transformers.T5Config(**config)).eval()  # as from_pretrained gives it: no dropout
    special = {}
    if tokenizer is not None:
        special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    return cls(transformers.CLIPTextConfig(**config, **special))


def meta_flow_models(name: str | FlowShape) -> dict[str, torch.nn.Module]:
    """The transformer, VAE and text encoders (by pipeline attribute) on the meta device: no memory, no init time."""
    shape = flow_shape(name) if isinstance(name, str) else name
    with torch.device("meta"):
        models = {"transformer": build_transformer(shape), "vae": build_vae(shape)}
        for attr, cls, cfg in shape.encoders:
            models[attr] = build_encoder(cls, cfg)
    return models


def meta_flow_parameter_counts(name: str | FlowShape) -> dict[str, int]:
    """Parameters plus floating-point buffers per part (SD 3.5's 384x384 position table is a buffer, 226M)."""
    return {part: tensor_count(m) for part, m in meta_flow_models(name).items()}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _component_builders(shape: FlowShape, tokenizers: dict) -> list:
    """(pipeline attribute, library, build) for each model part, largest last so the folder fills in order."""
    parts = [("vae", "diffusers", lambda: build_vae(shape))]
    for attr, cls, cfg in shape.encoders:
        tokenizer = tokenizers.get(attr.replace("text_encoder", "tokenizer"))
        parts.append((attr, "transformers", lambda cls=cls, cfg=cfg, tok=tokenizer: build_encoder(cls, cfg, tok)))
    parts.append(("transformer", "diffusers", lambda: build_transformer(shape)))
    return parts


def save_flow_pipeline(name: str | FlowShape, path: str | Path, *, seed: int = 0,
                       dtype: torch.dtype = torch.bfloat16) -> Path:
    """A random-weight pipeline folder (``base_model: <folder>`` loads it), written once and reused after.

    Each part is initialised directly in ``dtype`` and saved as safetensors before the next is built, so the
    peak memory is the largest part's size in ``dtype`` (T5-XXL: 9.5 GB in bf16), never the whole pipeline's.
    """
    from dbooth.util.fsutil import atomic_path

    shape = flow_shape(name) if isinstance(name, str) else name
    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    torch.manual_seed(seed)
    tokenizers = flow_tokenizers(shape)
    with atomic_path(path) as tmp:
        index = _save_small_parts(shape, tokenizers, Path(tmp))
        for attr, library, build in _component_builders(shape, tokenizers):
            with _default_dtype(dtype):
                model = build()
            model.to(dtype)  # buffers made in float32 (SD 3.5's position table) too
            model.save_pretrained(str(Path(tmp) / attr), safe_serialization=True)
            index[attr] = [library, type(model).__name__]
            del model
            gc.collect()
        (Path(tmp) / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return path


def _save_small_parts(shape: FlowShape, tokenizers: dict, folder: Path) -> dict:
    """Tokenizers and scheduler saved; returns model_index.json's start."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    index = {"_class_name": shape.pipeline, "_diffusers_version": diffusers.__version__}
    for attr, tokenizer in tokenizers.items():
        tokenizer.save_pretrained(str(folder / attr))
        index[attr] = ["transformers", type(tokenizer).__name__]
    FlowMatchEulerDiscreteScheduler(**shape.scheduler).save_pretrained(str(folder / "scheduler"))
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    return index
