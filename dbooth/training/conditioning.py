"""The captions a run trains on, as the UNet's conditioning: encoded once when the text encoders are frozen."""

from __future__ import annotations

import torch

from dbooth.families import Conditioning, Family


class PromptBank:
    """One entry per caption (each instance photo's, then the class prompt)."""

    def __init__(self, family: Family, tokenizers: list, encoders: dict, prompts: list[str], *, cache: bool,
                 device: torch.device, dtype: torch.dtype, max_sequence_length: int | None = None):
        self.family, self.encoders, self.device = family, encoders, device
        self.ids = family.tokenize(tokenizers, prompts, max_sequence_length=max_sequence_length)
        self.cached: Conditioning | None = None
        if cache:
            with torch.no_grad():
                self.cached = self._encode(list(range(len(prompts)))).to(dtype=dtype)

    def get(self, which: list[int], *, grad: bool) -> Conditioning:
        """The conditioning for captions ``which``; ``grad`` when the text encoders are being trained."""
        if self.cached is not None:
            return self.cached.select(which)
        if grad:
            return self._encode(which)
        with torch.no_grad():
            return self._encode(which)

    def _encode(self, which: list[int]) -> Conditioning:
        ids = [x[which].to(self.device) for x in self.ids]
        return self.family.encode(list(self.encoders.values()), ids)
