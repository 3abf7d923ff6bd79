"""OpenCLIP layout: run as OpenCLIP runs it (what AUTOMATIC1111 and ComfyUI do), the written weights give the
Hugging Face encoder's features, whichever of the last two layers a client reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dbooth.families.clip_layout import clip_to_openclip
from dbooth.families.tiny import tiny_sd2_pipeline, tiny_sdxl_pipeline


def _openclip_encode(sd: dict[str, torch.Tensor], ids: torch.Tensor, blocks: int, heads: int) -> torch.Tensor:
    """OpenCLIP's TextTransformer: token + positional embedding, causal residual blocks (nn.MultiheadAttention,
    GELU MLP), then ln_final."""
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][: ids.shape[1]]
    width, length = x.shape[-1], ids.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(blocks):
        p = f"transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attn.load_state_dict({k: sd[p + "attn." + k] for k in attn.state_dict()})
        h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = F.gelu(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return F.layer_norm(x, (width,), sd["ln_final.weight"], sd["ln_final.bias"])


def _ids(text_encoder, eos: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, text_encoder.config.vocab_size, (2, 16), generator=gen)
    ids[:, -1] = eos  # pooled features are read at the end-of-text token
    return ids


@torch.no_grad()
def test_sd2_encoder_gives_the_same_features_from_the_penultimate_and_the_padded_last_block():
    pipe = tiny_sd2_pipeline(seed=0)
    te = pipe.text_encoder
    sd = clip_to_openclip(te, penultimate=True)
    ids = _ids(te, pipe.tokenizer.eos_token_id)
    want = te(ids).last_hidden_state
    n, heads = te.config.num_hidden_layers, te.config.num_attention_heads

    penultimate = _openclip_encode(sd, ids, n, heads)  # AUTOMATIC1111 / ComfyUI stop before the last block
    last = _openclip_encode(sd, ids, n + 1, heads)
    assert (penultimate - want).abs().max() < 1e-5
    assert (last - want).abs().max() < 1e-5
    assert (_openclip_encode(sd, ids, n - 1, heads) - want).abs().max() > 1e-2  # a block short is different


@torch.no_grad()
def test_sdxl_second_encoder_runs_as_openclip_with_its_projection():
    pipe = tiny_sdxl_pipeline(seed=0)
    te2 = pipe.text_encoder_2
    sd = clip_to_openclip(te2)
    ids = _ids(te2, pipe.tokenizer_2.eos_token_id)
    out = te2(ids)

    features = _openclip_encode(sd, ids, te2.config.num_hidden_layers, te2.config.num_attention_heads)
    assert (features - out.last_hidden_state).abs().max() < 1e-5
    pooled = features[:, -1] @ sd["text_projection"]  # OpenCLIP: x[eot] @ text_projection
    assert (pooled - out.text_embeds).abs().max() < 1e-5
    assert not any(k.startswith(f"transformer.resblocks.{te2.config.num_hidden_layers}.") for k in sd)
