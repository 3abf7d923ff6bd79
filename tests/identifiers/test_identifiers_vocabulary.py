"""The tokenizer's word on identifiers: single tokens, ordinary words, rare candidates; loaded cheaply and offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import huggingface_hub.constants
import numpy as np
import pytest
from clip_bpe import COMMON, RARE

from dbooth_shapes.architecture import IDENTIFIER_TOKENS
from dbooth_shapes.world import pretraining_caption, random_scene, world_words
from dbooth.identifiers import TokenizerUnavailable, identifier_warnings, load_vocabulary
from dbooth.identifiers.vocabulary import FREQUENT_FRACTION, NOT_OFFERED

REPO = "some-org/cached-model"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def test_ordinary_words_are_the_whole_word_tokens_in_the_first_two_thirds(clip_like):
    vocab = load_vocabulary(str(clip_like))
    ids = json.loads((clip_like / "tokenizer" / "vocab.json").read_text())
    for word in COMMON + RARE:
        assert vocab.tokens(word) == [word + "</w>"]
        assert vocab.ordinary(word) == (ids[word + "</w>"] < FREQUENT_FRACTION * len(ids)), word
    assert all(vocab.ordinary(w) for w in COMMON if len(w) > 1)
    assert not any(vocab.ordinary(w) for w in RARE)
    assert vocab.ordinary("DOG")  # CLIP's tokenizer lowercases, and so does the check
    assert not vocab.ordinary("zwx")  # no token at all


def test_candidates_are_rare_short_vowelless_tokens_rarest_first(clip_like):
    vocab = load_vocabulary(str(clip_like))
    ids = json.loads((clip_like / "tokenizer" / "vocab.json").read_text())
    expected = sorted((w for w in RARE if 2 <= len(w) <= 3 and not set(w) & set("aeiouy") and w not in NOT_OFFERED),
                      key=lambda w: -ids[w + "</w>"])
    assert vocab.candidates() == expected
    assert expected[0] == "xq" and "sks" in expected
    assert "bao" not in expected and "teapot" not in expected and "fck" not in expected


def test_a_string_without_its_own_token_splits(clip_like):
    vocab = load_vocabulary(str(clip_like))
    assert vocab.tokens("zwx") == ["z", "w", "x</w>"]
    assert vocab.tokens("kvtz") == ["kv", "t", "z</w>"]  # a rare token's merges do not make a longer word one


def test_tokenizer_json_and_vocab_files_read_alike(clip_like, tmp_path):
    from transformers import CLIPTokenizer

    other = tmp_path / "model"
    shutil.copytree(clip_like, other)
    CLIPTokenizer.from_pretrained(str(other / "tokenizer")).save_pretrained(str(other / "tokenizer"))
    for name in ("vocab.json", "merges.txt"):
        (other / "tokenizer" / name).unlink(missing_ok=True)
    assert (other / "tokenizer" / "tokenizer.json").is_file()
    a, b = load_vocabulary(str(clip_like)), load_vocabulary(str(other))
    assert a.words == b.words and a.candidates() == b.candidates()
    for word in ["zwx", "photo", "sks", "Teapot", "a-b"]:
        assert a.tokens(word) == b.tokens(word)


def test_builtin_candidates_exist_in_its_vocabulary_and_never_in_its_captions():
    vocab = load_vocabulary("builtin:shapes")
    candidates = vocab.candidates()
    assert candidates == list(IDENTIFIER_TOKENS)  # the six the model card names, in vocabulary order
    rng = np.random.default_rng(0)
    seen = {w for _ in range(3000) for w in pretraining_caption(random_scene(rng), rng).split()}
    assert seen <= set(world_words())
    for c in candidates:
        assert vocab.tokens(c) == [c + "</w>"] and c not in seen
    assert all(vocab.ordinary(w) for w in world_words())
    assert vocab.tokens("dog") == ["d", "o", "g</w>"]  # not a word of its world


def test_reading_the_builtin_vocabulary_imports_no_heavy_library():
    code = ("import sys; from dbooth.identifiers import load_vocabulary; v = load_vocabulary('builtin:shapes'); "
            "v.candidates(); print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_cached_hub_model_is_read_offline(clip_like, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(clip_like, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert load_vocabulary(REPO).words == load_vocabulary(str(clip_like)).words


def test_an_uncached_hub_model_or_a_single_file_skips_the_check_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(TokenizerUnavailable, match="not in the local Hugging Face cache") as info:
        load_vocabulary("some-org/not-downloaded")
    assert "huggingface-cli download some-org/not-downloaded" in info.value.fix
    warnings, note = identifier_warnings("some-org/not-downloaded", ["dog"])
    assert warnings == [] and "not checked" in note
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"\0" * 16)
    warnings, note = identifier_warnings(str(single), ["dog"])
    assert warnings == [] and "single-file checkpoint" in note


def test_a_damaged_tokenizer_is_a_note_not_a_crash(clip_like, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(clip_like, broken)
    (broken / "tokenizer" / "vocab.json").write_text("{not json")
    warnings, note = identifier_warnings(str(broken), ["dog"])
    assert warnings == [] and "cannot be read" in note
