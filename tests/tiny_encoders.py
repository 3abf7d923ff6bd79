"""Tiny random-weight DINO and CLIP encoders built in code, for tests and offline smoke runs of ``dbooth eval``.

Their scores mean nothing; they exercise the same classes and code paths as facebook/dino-vits16 and
openai/clip-vit-base-patch32 in a few hundred kilobytes.
"""

from __future__ import annotations

from pathlib import Path


def save_tiny_dino(path: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=37)
    ViTModel(config).save_pretrained(path, safe_serialization=True)
    return Path(path)


def save_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    from dbooth.families.tiny import TINY_WORDS
    from dbooth.families.tokenizer import build_word_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return Path(path)
