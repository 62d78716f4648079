"""The shard format (`docs/shards.md`): one Parquet row per sample, spikes stored sparsely.

Columns: `sample_id` string, `label` int16, `split` string, `times` list<uint16> (the step of each
spike), `neurons` list<uint32> (the input index of each spike), sorted by time then neuron; then one
string column per metadata key of the source (for example `speaker`); then, optionally, `pixels`
binary (the raw uint8 image, row-major, for re-encoding each epoch). The schema metadata holds the
manifest's constant part (`hm2bp.dataset`) and this shard's own facts (`hm2bp.shard`: the plan key
that a rerun compares, spike and class counts, skipped files).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.source import SampleRef
from hm2bp.pipelines.storage import write_atomic

DATASET_KEY = b"hm2bp.dataset"
SHARD_KEY = b"hm2bp.shard"
COMPRESSION = "zstd"


@dataclass(frozen=True)
class EncodedSample:
    """One sample ready for a shard: its ref, assigned split, spikes and (optionally) pixels."""

    ref: SampleRef
    split: str
    times: np.ndarray  # uint16 [spikes]
    neurons: np.ndarray  # uint32 [spikes]
    pixels: np.ndarray | None = None  # uint8 [H, W]


def shard_schema(meta_keys: Sequence[str], keep_pixels: bool) -> pa.Schema:
    """The columns of every shard of one conversion (identical across its shards)."""
    columns = [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int16(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("times", pa.list_(pa.uint16()), nullable=False),
        pa.field("neurons", pa.list_(pa.uint32()), nullable=False),
        *(pa.field(key, pa.string()) for key in meta_keys),
    ]
    if keep_pixels:
        columns.append(pa.field("pixels", pa.binary(), nullable=False))
    return pa.schema(columns)


def _list_array(parts: Sequence[np.ndarray], dtype: pa.DataType) -> pa.ListArray:
    """A list column from per-row arrays, built from offsets (no per-element Python objects)."""
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts], dtype=np.int64)])
    if offsets[-1] >= 2**31:
        raise ValueError(
            f"rows_per_shard: {offsets[-1]} spikes in one shard (expected fewer than 2**31, the "
            "limit of a Parquet list column; use fewer rows per shard)"
        )
    values = np.concatenate(parts) if parts else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, type=dtype))


def shard_table(
    samples: Sequence[EncodedSample], schema: pa.Schema, metadata: dict[bytes, bytes]
) -> pa.Table:
    """The Parquet table of one shard, with `metadata` as its schema metadata."""
    columns: dict[str, Any] = {
        "sample_id": pa.array([s.ref.sample_id for s in samples], pa.string()),
        "label": pa.array([s.ref.label for s in samples], pa.int16()),
        "split": pa.array([s.split for s in samples], pa.string()),
        "times": _list_array([s.times for s in samples], pa.uint16()),
        "neurons": _list_array([s.neurons for s in samples], pa.uint32()),
    }
    for name in schema.names[5:]:
        if name == "pixels":
            columns[name] = pa.array(
                [np.ascontiguousarray(s.pixels).tobytes() for s in samples], pa.binary()
            )
        else:
            columns[name] = pa.array([s.ref.meta.get(name) for s in samples], pa.string())
    return pa.table(columns, schema=schema.with_metadata(metadata))


def write_shard(fs: pafs.FileSystem, path: str, table: pa.Table) -> str:
    """Write `table` atomically to `path`; returns the sha256 of the bytes written."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=COMPRESSION)
    data = buffer.getvalue()
    write_atomic(fs, path, data)
    return sha256_bytes(data)


def shard_info(fs: pafs.FileSystem, path: str) -> tuple[int, dict[str, Any]] | None:
    """`(rows, hm2bp.shard metadata)` from a shard's footer, or None when the file is missing or
    not a readable shard (a rerun then writes it again)."""
    try:
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            metadata = parquet.schema_arrow.metadata or {}
            rows = parquet.metadata.num_rows
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    if SHARD_KEY not in metadata:
        return None
    return rows, json.loads(metadata[SHARD_KEY])
