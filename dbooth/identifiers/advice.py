"""Advice on identifiers from a vocabulary: warnings for a poor one, rare candidates, and ``--identifier auto``."""

from __future__ import annotations

from typing import Iterable

from dbooth.util.errors import DboothError
from dbooth.identifiers.vocabulary import END, TokenizerUnavailable, Vocabulary, load_vocabulary

AUTO = "auto"  # --identifier auto: the first free candidate
SUGGESTED = 3  # candidates named in a warning


def free_candidates(vocab: Vocabulary, used: Iterable[str] = ()) -> list[str]:
    """``vocab.candidates()`` without the identifiers already in use (compared as the tokenizer does: lowercase)."""
    taken = {u.lower() for u in used}
    return [c for c in vocab.candidates() if c not in taken]


def check_identifier(identifier: str, vocab: Vocabulary, used: Iterable[str] = ()) -> list[str]:
    """What is wrong with ``identifier`` (nothing for a rare single token), each saying why it matters and what
    to use instead, without naming the identifier."""
    tokens = vocab.tokens(identifier)
    word = identifier.lower()
    problems = []
    if len(tokens) > 1:
        shown = " + ".join(t[: -len(END)] if t.endswith(END) else t for t in tokens)
        problems.append(f"{vocab.model}'s tokenizer splits it into {len(tokens)} tokens ({shown}): each piece "
                        "brings its own meaning and the subject is bound to their combination")
    elif vocab.ordinary(word):
        problems.append(f"it is an ordinary word for {vocab.model} ({vocab.why_ordinary(word)}): the model already "
                        "draws something for it and must unlearn that while it learns your subject")
    if not problems:
        return []
    offer = free_candidates(vocab, [*used, identifier])[:SUGGESTED]
    advice = ("DreamBooth (section 4.2) uses one rare token with a weak prior instead"
              + (f", e.g. {', '.join(offer)} (`dbooth identifiers` lists more)" if offer else ""))
    return [f"{p}. {advice}" for p in problems]


def pick_identifier(base_model: str, used: Iterable[str] = (), *, allow_pickle: bool = False) -> str:
    """``--identifier auto``: the first free rare single token of the base model's vocabulary."""
    try:
        vocab = load_vocabulary(base_model, allow_pickle=allow_pickle)
    except TokenizerUnavailable as exc:
        raise DboothError(f"--identifier auto needs the base model's tokenizer, and {exc}; "
                          f"pass --identifier TOKEN (e.g. sks), or {exc.fix}") from None
    free = free_candidates(vocab, used)
    if not free:
        raise DboothError(f"--identifier auto: {base_model}'s vocabulary has no free rare single token left; "
                          "pass --identifier TOKEN")
    return free[0]


def identifier_warnings(base_model: str, identifiers: Iterable[str], used: Iterable[str] = (), *,
                        allow_pickle: bool = False) -> tuple[list[str], str | None]:
    """(warnings for each identifier, a note when the check could not run), for ``init`` and ``--add-subject``."""
    try:
        vocab = load_vocabulary(base_model, allow_pickle=allow_pickle)
    except TokenizerUnavailable as exc:
        return [], f"identifier not checked against the tokenizer: {exc}"
    used = list(used)
    return [f"identifier {ident!r}: {w}" for ident in identifiers for w in check_identifier(ident, vocab, used)], None
