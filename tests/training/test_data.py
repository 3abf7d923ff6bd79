"""Latent caching encodes fewer images per VAE call as the resolution grows."""

from __future__ import annotations

from dbooth.training.data import encode_batch_for


def test_encode_batch_shrinks_with_resolution():
    assert [encode_batch_for(r) for r in (32, 256, 512, 768, 1024, 2048)] == [8, 8, 8, 3, 2, 1]
