"""What the base model's tokenizer says about an identifier: how many tokens it is, and whether the model already
has a meaning for it.

DreamBooth (Ruiz et al. 2023, section 4.2) binds the subject to an identifier that should be one rare token with
a weak prior: a word the model knows ("dog", "red") must be unlearned while the subject is learned, and a string
the tokenizer splits ("zwx" = "z" + "wx") brings each piece's meaning along. Only the tokenizer's files are read,
never the model: ``tokenizer.json`` with the tokenizers library (fast to import), else ``vocab.json`` and
``merges.txt`` with transformers' CLIPTokenizer, from a diffusers folder, the built-in model, or the Hugging Face
cache (``try_to_load_from_cache``; nothing is downloaded).

Which words are ordinary, without shipping a dictionary:

- CLIP's BPE vocabulary (every Stable Diffusion family) lists the 512 byte tokens and then one token per merge,
  in the order the merges were learned, and BPE learns the most frequent pair of its training text first. A
  token's id is therefore a frequency rank, and a whole-word token (``dog</w>``) exists at all only because the
  word was common enough. A whole-word token in the first two thirds of the vocabulary (``FREQUENT_FRACTION``) is
  an ordinary word: photo 1125, dog 1929, shoe 7342, rifle 15354, corgi 31320 of 49408. The rarer third holds
  abbreviations, names and fragments (sks 48136). A rare real word (teapot 40749) passes: the rank cannot see
  meaning there, and ``dbooth identifiers --prior`` measures what the model draws for it.
- A model whose training captions are known exactly (``builtin:shapes``, pretrained on dbooth_shapes.world):
  an ordinary word is a word of those captions; every other token of its vocabulary was never seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from dbooth.util.errors import DboothError

FREQUENT_FRACTION = 2 / 3  # CLIP BPE: whole-word tokens with an id below this share of the vocabulary are common
END = "</w>"  # CLIP BPE marks a token that ends a word; ``dog</w>`` is the whole word "dog"
VOWELS = frozenset("aeiouy")  # a candidate without them cannot be read as an English word
# the rank cannot see meaning: rare tokens that are profanity are never offered (they can still be chosen)
NOT_OFFERED = frozenset({"fck", "fml", "wtf"})
_COMPLETE = "check that the model folder is a complete diffusers pipeline"
MIN_LETTERS, MAX_LETTERS = 2, 3  # the paper's identifiers are 3 characters or fewer; one letter reads as a letter


class TokenizerUnavailable(DboothError):
    """The base model's tokenizer cannot be read without a download (or the model has none of its own).
    The message says why, in one clause, and ``fix`` what to do; callers add what it means for them."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class Vocabulary:
    """A tokenizer's vocabulary and the rules above; ``caption_words`` set when the training captions are known."""

    model: str  # the base model, as the user named it
    ids: Mapping[str, int]  # every token and its id
    split: Callable[[str], list[str]]  # the tokenizer's tokens for one word (lowercased, as CLIP's tokenizer does)
    caption_words: frozenset[str] | None = None  # every word of the model's training captions, when known
    words: dict[str, int] = field(init=False, repr=False)  # whole-word tokens without their end mark -> id

    def __post_init__(self) -> None:
        words = {t[: -len(END)]: i for t, i in self.ids.items() if t.endswith(END) and len(t) > len(END)}
        object.__setattr__(self, "words", words)

    @property
    def size(self) -> int:
        return len(self.ids)

    def tokens(self, identifier: str) -> list[str]:
        return list(self.split(identifier))

    def ordinary(self, word: str) -> bool:
        """The model already has a meaning for ``word`` (see the module docstring for the rule)."""
        word = word.lower()
        if self.caption_words is not None:
            return word in self.caption_words
        i = self.words.get(word)
        return i is not None and i < FREQUENT_FRACTION * self.size

    def why_ordinary(self, word: str) -> str:
        word = word.lower()
        if self.caption_words is not None:
            return "a word of its training captions"
        return (f"token {self.words[word]} of {self.size}: early in CLIP's BPE vocabulary, among its captions' "
                "common words")

    def candidates(self) -> list[str]:
        """Rare single tokens, the paper's way: whole-word tokens of 2-3 letters that are no ordinary word.

        With known captions every such token was seen zero times, so they keep the vocabulary's order; with
        CLIP's BPE the rarest (latest merged) come first, and only letter strings without a vowel are offered,
        which cannot be read as English words (abbreviations at most).
        """
        found = [(i, w) for w, i in self.words.items()
                 if MIN_LETTERS <= len(w) <= MAX_LETTERS and w.isascii() and w.isalpha() and w.islower()
                 and not self.ordinary(w) and w not in NOT_OFFERED and self.tokens(w) == [w + END]]
        if self.caption_words is not None:
            return [w for _, w in sorted(found)]
        return [w for i, w in sorted(found, reverse=True) if not VOWELS & set(w)]


def load_vocabulary(base_model: str, *, allow_pickle: bool = False) -> Vocabulary:
    """The base model's tokenizer vocabulary; ``TokenizerUnavailable`` says why it cannot be read."""
    from dbooth.families.source import resolve_model

    source = resolve_model(base_model, allow_pickle=allow_pickle)
    if source.kind == "single_file":
        raise TokenizerUnavailable(f"base model {base_model} is a single-file checkpoint, which holds no tokenizer "
                                   "files", "pass the diffusers folder or hub id it came from with --base")
    folder = _tokenizer_folder(source)
    if folder is None:
        if source.kind == "hub":
            raise TokenizerUnavailable(f"base model {base_model}: its tokenizer is not in the local Hugging Face cache",
                                       f"download it once (huggingface-cli download {base_model} --include "
                                       "'tokenizer/*') or pass a local model with --base")
        raise TokenizerUnavailable(f"base model {base_model}: has no tokenizer/ folder", _COMPLETE)
    ids, split = _read_tokenizer(folder, base_model)
    captions = None
    if source.kind == "builtin":
        from dbooth.plugins import named_model

        vocabulary = named_model(base_model).vocabulary
        captions = vocabulary() if vocabulary is not None else None
    return Vocabulary(base_model, ids, split, captions)


def _tokenizer_folder(source) -> Path | None:
    """The model's ``tokenizer/`` folder (SDXL's first tokenizer: both use CLIP's vocabulary)."""
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        for name in ("tokenizer/tokenizer.json", "tokenizer/vocab.json"):
            found = try_to_load_from_cache(source.location, name)
            if isinstance(found, str):
                return Path(found).parent
        return None
    folder = Path(source.location) / "tokenizer"
    return folder if folder.is_dir() else None


def _read_tokenizer(folder: Path, base_model: str) -> tuple[dict[str, int], Callable[[str], list[str]]]:
    try:
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            return tok.get_vocab(), lambda word: tok.encode(word, add_special_tokens=False).tokens
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            from transformers import CLIPTokenizer

            clip = CLIPTokenizer.from_pretrained(str(folder))
            return clip.get_vocab(), clip.tokenize
    except Exception as exc:  # transformers raises OSError or ValueError, tokenizers its own Exception
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise TokenizerUnavailable(f"base model {base_model}: its tokenizer in {folder} cannot be read ({reason})",
                                   _COMPLETE) from None
    raise TokenizerUnavailable(f"base model {base_model}: {folder} has neither tokenizer.json nor vocab.json and "
                               "merges.txt", _COMPLETE)
