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
    """A tokenizer in which every given word is a single token.

    BPE applies merges by rank, so a short word's merge (``i n</w>``) can fire inside a
    longer word (``mountain``) and split it: words that still split are moved to the front
    (their merges get the best ranks) until none does.
    """
    order = sorted(dict.fromkeys(w.lower() for w in words), key=len, reverse=True)
    for _ in range(len(order) + 1):
        tokenizer = _build(order, model_max_length)
        split = [w for w in order if len(tokenizer.tokenize(w)) != 1]
        if not split:
            return tokenizer
        order = split + [w for w in order if w not in split]
    raise ValueError(f"could not make these words single tokens: {', '.join(split)}")


def _build(words: list[str], model_max_length: int) -> CLIPTokenizer:
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
