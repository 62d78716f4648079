"""The reading side for a trainer: a Ray Dataset over a split's shards.

`read_shards` reads only the files the manifest lists for the split (shards are per split), so
stale or foreign files in the folder never leak in, and every read task verifies what it reads
(`shards.read_shard`: sha256, rows, split, sample ids, value ranges) on whichever node it runs.
Iterate it with `iter_batches(batch_format="pyarrow")` and `decode.decode_spikes` for dense
`(spikes uint8 [T, B, N], labels int64 [B])`: pyarrow batches let it read the list columns without
copying.

The dataset comes from a datasource of our own rather than `ray.data.read_parquet`: the files and
their digests are in the manifest already, so there is nothing to discover (Ray 2.60's Parquet
datasource adds a file-listing stage that cost 10-40 s per pass over 1,000 N-MNIST rows on our
2-core machines), and a read task must hash the very bytes it parses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import ray.data
from hm2bp.pipelines.manifest import Manifest, ShardEntry, read_manifest
from hm2bp.pipelines.shards import ShardSource, read_shard
from hm2bp.pipelines.storage import absolute
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask


def _decoded_bytes(entries: Sequence[ShardEntry]) -> int:
    """What the shards take once read: the list columns, 2 + 4 bytes per spike."""
    return sum(6 * e.spikes for e in entries)


class ShardDatasource(Datasource):
    """The listed shards of one conversion, each read and verified by a Ray Data read task."""

    def __init__(
        self,
        location: str,
        manifest: Manifest,
        entries: Sequence[ShardEntry],
        columns: Sequence[str] | None,
    ) -> None:
        super().__init__()
        self.location = location
        self.manifest = manifest
        self.entries = list(entries)
        self.columns = None if columns is None else list(columns)

    def estimate_inmemory_data_size(self) -> int:
        return _decoded_bytes(self.entries)

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
        # Consecutive shards per task: in order, the blocks are then the shards in manifest order
        # whatever parallelism Ray Data picks (it follows the cluster's CPUs), so each worker's
        # share of an ordered split is the same on any cluster.
        tasks = max(1, min(parallelism, len(self.entries)))
        bounds = [len(self.entries) * i // tasks for i in range(tasks + 1)]
        return [self._task(self.entries[a:b]) for a, b in itertools.pairwise(bounds) if b > a]

    def _task(self, group: list[ShardEntry]) -> ReadTask:
        location, manifest, columns = self.location, self.manifest, self.columns
        metadata = BlockMetadata(
            num_rows=sum(e.rows for e in group),
            size_bytes=_decoded_bytes(group),
            exec_stats=None,
            input_files=[f"{location}/{e.file}" for e in group],
        )

        def read() -> Iterator[Any]:
            source = ShardSource.of(location)
            for entry in group:
                yield read_shard(source, entry, manifest, columns)

        return ReadTask(read, metadata)


def read_shards(
    location: str, split: str | None = None, columns: Sequence[str] | None = None
) -> ray.data.Dataset:
    """A Ray Dataset over the shards under `location` (a local path or URI), optionally of one
    split (`train`, `val`, `test`) and only some columns; each shard verified as it is read."""
    location = absolute(location)  # read tasks do not share our working directory
    manifest = read_manifest(location)
    entries = manifest.entries(split, location)
    # One block per shard, on any cluster: left to itself, Ray Data splits each read task's output
    # into a number of blocks that follows the cluster's CPUs, and an equal split of the train set
    # among workers would then hand each worker other samples on another cluster.
    return ray.data.read_datasource(
        ShardDatasource(location, manifest, entries, columns),
        override_num_blocks=max(1, len(entries)),
    )
