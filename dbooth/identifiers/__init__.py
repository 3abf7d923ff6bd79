"""Identifiers (DreamBooth section 4.2): is the one you chose a rare single token, which ones are, and what the
base model already draws for it. ``vocabulary`` and ``advice`` read the tokenizer only; ``prior`` samples."""

from dbooth.identifiers.advice import AUTO, check_identifier, free_candidates, identifier_warnings, pick_identifier
from dbooth.identifiers.vocabulary import TokenizerUnavailable, Vocabulary, load_vocabulary

__all__ = ["AUTO", "TokenizerUnavailable", "Vocabulary", "check_identifier", "free_candidates",
           "identifier_warnings", "load_vocabulary", "pick_identifier"]
