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


def build_t5_tokenizer(words: Iterable[str], model_max_length: int = 512):
    """A T5 tokenizer (a sentencepiece-style unigram model) in which every given word is one piece; other
    words fall back to single characters, as T5's own does for rare ones."""
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -1.0) for w in dict.fromkeys(w.lower() for w in words)]
    vocab += [("\u2581", -3.0)] + [(c, -5.0) for c in string.ascii_lowercase + string.digits + ",.-'!?"]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


# One user turn as Qwen3's chat template renders it (a system turn renders the same way, with its role):
# ``<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n``, and after it, when the caller turns
# thinking off (``enable_thinking=False``, as FLUX.2 [klein] does), an empty think block.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}{%- endif -%}"
)
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")


def build_qwen_tokenizer(words: Iterable[str], model_max_length: int = 131072):
    """A Qwen2 byte-level BPE tokenizer (Qwen3's kind) with Qwen3's chat template, built offline: every byte is a
    token, so any text tokenizes; each given word (and the template's own) is one token, alone or after a space."""
    table = _byte_characters()
    texts = [w.lower() for w in words] + ["user", "assistant"]
    order = list(dict.fromkeys(t for w in texts for t in (w, " " + w)))  # a word alone, and after a space
    for _ in range(len(order) + 1):
        tokenizer = _build_qwen(["".join(table[b] for b in t.encode()) for t in order], model_max_length)
        split = [t for t in order if len(tokenizer.tokenize(t)) != 1]
        if not split:
            return tokenizer
        order = split + [t for t in order if t not in split]
    raise ValueError(f"could not make these words single tokens: {', '.join(split)}")


def _build_qwen(words: list[str], model_max_length: int):
    """``words`` in byte-level characters (a leading space is "\u0120")."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    vocab = {c: i for i, c in enumerate(_byte_characters())}
    merges: list[tuple[str, str]] = []
    for word in words:
        current = word[0]
        for part in word[1:]:
            if (current, part) not in merges:
                merges.append((current, part))
            current += part
            vocab.setdefault(current, len(vocab))
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL[1:]])
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def _byte_characters() -> list[str]:
    """GPT-2's byte-to-character table (byte-level BPE's alphabet), in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]
