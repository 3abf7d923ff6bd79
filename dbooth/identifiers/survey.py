"""``dbooth identifiers``: a base model's rare-token candidates, checks of chosen identifiers, and their priors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dbooth.util.errors import DboothError
from dbooth.identifiers.advice import check_identifier, free_candidates
from dbooth.identifiers.vocabulary import TokenizerUnavailable, load_vocabulary


@dataclass
class Survey:
    model: str
    vocabulary_size: int
    rule: str  # how "rare" was decided, in words
    candidates: list[str]  # free rare single tokens, best first
    used: list[str]  # identifiers the workspace already uses
    checks: dict[str, list[str]]  # identifier -> warnings (empty: a rare single token)
    priors: list = field(default_factory=list)  # dbooth.identifiers.base_meaning.IdentifierPrior, when measured

    def to_dict(self) -> dict:
        return {"model": self.model, "vocabulary_size": self.vocabulary_size, "rule": self.rule,
                "candidates": self.candidates, "used": self.used, "checks": self.checks,
                "priors": [p.to_dict() for p in self.priors]}


def survey(base_model: str, *, num: int = 10, used: Sequence[str] = (), check: Sequence[str] = (),
           allow_pickle: bool = False) -> Survey:
    """The first ``num`` free candidates and the warnings for each identifier in ``check``; reads the tokenizer only."""
    try:
        vocab = load_vocabulary(base_model, allow_pickle=allow_pickle)
    except TokenizerUnavailable as exc:
        raise DboothError(f"identifiers: {exc}; {exc.fix}") from None
    rule = ("tokens its training captions never use" if vocab.caption_words is not None
            else "the latest-merged third of CLIP's BPE vocabulary, no vowels, rarest first")
    return Survey(
        model=base_model,
        vocabulary_size=vocab.size,
        rule=rule,
        candidates=free_candidates(vocab, used)[:num],
        used=list(used),
        checks={ident: check_identifier(ident, vocab, used) for ident in check},
    )
