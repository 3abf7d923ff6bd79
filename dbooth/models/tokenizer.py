"""Build a CLIP BPE tokenizer offline from a word list.

Every word becomes one token; single characters stay in the vocabulary so that any
other lowercase word still tokenizes (as characters) instead of collapsing to <unk>.
"""

from __future__ import annotations

import string
from typing import Iterable

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_word_tokenizer(words: Iterable[str], model_max_length: int = 77) -> CLIPTokenizer:
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    add(BOS)
    add(EOS)
    for c in string.ascii_lowercase + string.digits + ",.-'!?":
        add(c)
        add(c + "</w>")
    seen_merges: set[tuple[str, str]] = set()
    for word in dict.fromkeys(w.lower() for w in words):
        if not word or any(c not in vocab for c in word):
            raise ValueError(f"tokenizer word {word!r} must use a-z, 0-9 or ,.-'!? only")
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            pair = (current, part)
            if pair not in seen_merges:
                seen_merges.add(pair)
                merges.append(pair)
            current += part
            add(current)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
