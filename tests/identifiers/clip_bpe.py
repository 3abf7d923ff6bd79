"""A CLIP-like BPE vocabulary built in code, whose merges follow word frequency as CLIP's own do."""

from __future__ import annotations

import json
import string
from pathlib import Path

# most frequent first: the order BPE would learn their merges in
COMMON = "a photo of the dog cat on in".split()
RARE = "sks hmv bao teapot fck zq kvt gloaming brr qwp vrz xq".split()  # late merges: "bao" has vowels, "teapot" is long


def write_clip_bpe(folder: Path, words: list[str]) -> Path:
    """``tokenizer/vocab.json`` + ``merges.txt`` laid out as CLIP's: characters, characters + ``</w>``, then one token
    per merge in merge order (so a token's id is its frequency rank), then the special tokens."""
    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for c in string.ascii_lowercase:
        add(c)
    for c in string.ascii_lowercase:
        add(c + "</w>")
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            if current + part not in vocab:
                merges.append(f"{current} {part}")
            current += part
            add(current)
    add("<|startoftext|>")
    add("<|endoftext|>")
    tok = folder / "tokenizer"
    tok.mkdir(parents=True)
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tok / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder
