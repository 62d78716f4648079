"""Per-sample random streams that do not depend on how samples are grouped into shards.

A sample's stream is derived from the conversion's global seed and the sample's stable id, so the
same sample gets the same spikes whether it lands in shard 3 of 10 or shard 0 of 1, on any worker,
in any order; a rerun that rewrites one shard reproduces it bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A PCG64 generator seeded by `SeedSequence([seed, *sha256(sample_id) as 8 uint32 words])`."""
    words = np.frombuffer(hashlib.sha256(sample_id.encode()).digest(), dtype="<u4")
    return np.random.default_rng(np.random.SeedSequence([seed, *words.tolist()]))
