"""Which samples go into which shard file, decided on the driver before any payload is read.

Shards are per split (`train-00000-<c>.parquet`, `val-00000-<c>.parquet`, ...), so a trainer reads
only the files of its split; `<c>` is the first 8 hex digits of the conversion's fingerprint, so
that another conversion into the same folder writes beside this one's files, never over them
(`destination.py` swaps the manifest, then deletes the old files). Within a split the order is
shuffled once with the conversion's seed, so that every shard mixes the classes even where the
source is sorted by label (N-MNIST's folders); a trainer still shuffles on top. Each shard gets a
key: a digest of everything that determines its bytes (the manifest's constant part, the options
that change rows, its file name and sample ids). A rerun keeps a shard whose footer carries the
same key, so a conversion resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hm2bp.pipelines.source import SampleRef
from hm2bp.pipelines.splits import SPLITS, Assignment

SHARD_NAME = re.compile(r"^(train|val|test)-\d{5}-[0-9a-f]{8}\.parquet$")


@dataclass(frozen=True)
class ShardPlan:
    file: str
    split: str
    refs: tuple[SampleRef, ...]
    key: str


def conversion_fingerprint(header: dict[str, Any], **row_options: Any) -> str:
    """A digest of the manifest's constant part and the options that change the rows."""
    text = json.dumps({"header": header, **row_options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_shards(
    refs: Sequence[SampleRef],
    assignment: Assignment,
    rows_per_shard: int,
    seed: int,
    fingerprint: str,
) -> list[ShardPlan]:
    """Shards of at most `rows_per_shard` samples, per split, in a seeded order."""
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard: got {rows_per_shard} (expected at least 1)")
    plans = []
    for split_index, split in enumerate(SPLITS):
        members = [ref for ref, s in zip(refs, assignment, strict=True) if s == split]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5AD, split_index]))
        members = [members[i] for i in rng.permutation(len(members))]
        for n, start in enumerate(range(0, len(members), rows_per_shard)):
            chunk = tuple(members[start : start + rows_per_shard])
            file = f"{split}-{n:05d}-{fingerprint[:8]}.parquet"
            ids = "\n".join(ref.sample_id for ref in chunk)
            key = hashlib.sha256(f"{fingerprint}\n{file}\n{ids}".encode()).hexdigest()
            plans.append(ShardPlan(file, split, chunk, key))
    return plans
