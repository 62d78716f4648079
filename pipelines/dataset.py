"""The reading side for a trainer: a Ray Dataset over a split's shards, and dense batches.

`read_shards` reads only the files the manifest lists for the split (shards are per split), so
stale or foreign files in the folder never leak in; `dense_batches` iterates a dataset (or a
worker's `ray.train.get_dataset_shard`) as `(spikes uint8 [T, B, N], labels int64 [B])`, taking
pyarrow batches so that `decode_spikes` reads the list columns without copying.

`read_shards` builds its dataset with Ray Data's first Parquet datasource: in Ray 2.60 the newer
one (`DataContext.use_datasource_v2`, the default) adds a file-listing stage that cost 10-40 s per
pass over 1,000 N-MNIST rows on our 2-core machines, against 1-10 s for the first one (the files are
listed in the manifest already, so there is nothing to discover). The caller's context is left as
it was; the dataset keeps the choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import ray.data
from hm2bp.pipelines.decode import decode_spikes
from hm2bp.pipelines.manifest import Manifest, read_manifest
from hm2bp.pipelines.storage import resolve


def read_shards(
    location: str, split: str | None = None, columns: Sequence[str] | None = None
) -> ray.data.Dataset:
    """A Ray Dataset over the shards under `location` (a local path or URI), optionally of one
    split (`train`, `val`, `test`) and only some columns."""
    manifest = read_manifest(location)
    fs, folder = resolve(location)
    files = [f"{folder}/{e.file}" for e in manifest.shards if split in (None, e.split)]
    if not files:
        found = sorted({e.split for e in manifest.shards})
        raise ValueError(
            f"split: no shards for {split!r} in {location} (expected one of {', '.join(found)})"
        )
    context = ray.data.DataContext.get_current()
    previous, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        dataset = ray.data.read_parquet(files, filesystem=fs)
    finally:
        context.use_datasource_v2 = previous
    return dataset.select_columns(list(columns)) if columns else dataset


def dense_batches(
    dataset: Any, manifest: Manifest, batch_size: int, **iter_options: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`(spikes uint8 [T, B, N], labels int64 [B])` per batch of a Ray Dataset or dataset shard;
    `iter_options` go to `iter_batches` (for example `local_shuffle_buffer_size`)."""
    for batch in dataset.iter_batches(
        batch_size=batch_size, batch_format="pyarrow", **iter_options
    ):
        yield decode_spikes(batch, manifest.T, manifest.n_inputs)
