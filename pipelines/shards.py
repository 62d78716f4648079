"""The shard format (`docs/shards.md`): one Parquet row per sample, spikes stored sparsely.

Columns: `sample_id` string, `label` int16, `split` string, `times` list<uint16> (the step of each
spike), `neurons` list<uint32> (the input index of each spike), sorted by time then neuron; then one
string column per metadata key of the source (for example `speaker`); then, optionally, `pixels`
binary (the raw uint8 image, row-major, for re-encoding each epoch). The schema metadata holds the
manifest's constant part (`hm2bp.dataset`) and this shard's own facts (`hm2bp.shard`: the plan key
that a rerun compares, spike and class counts, skipped files).

Readers trust no byte they have not checked: `read_shard` hashes the bytes it parses against the
manifest's sha256 (one read, so nothing can change between the check and the use), then checks the
rows, split, sample ids and value ranges against the manifest. A shard that fails is an error
naming it, what differs, and the command that writes it again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import Manifest, ShardEntry
from hm2bp.pipelines.source import SampleRef
from hm2bp.pipelines.storage import read_bytes, resolve, write_atomic

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


@dataclass(frozen=True)
class ShardSource:
    """Where one conversion's shards are: `location` as the user named it (a path or URI, for
    messages and the repair command), and the filesystem and folder it resolves to."""

    location: str
    fs: pafs.FileSystem
    folder: str

    @classmethod
    def of(cls, location: str) -> ShardSource:
        return cls(location.rstrip("/"), *resolve(location))

    def name(self, entry: ShardEntry) -> str:
        return f"{self.location}/{entry.file}"

    def damaged(
        self, entry: ShardEntry, manifest: Manifest, problem: str, expected: str = ""
    ) -> BadInputError:
        """The error for a shard that is not as the manifest says, with the command that writes
        it again (built only here: reads that pass never pay for it)."""
        repair = f"a whole shard; {manifest.repair_hint(self.location)}"
        return BadInputError(
            self.name(entry), problem, f"{expected}; {repair}" if expected else repair
        )


def verified_bytes(source: ShardSource, entry: ShardEntry, manifest: Manifest) -> bytes:
    """The bytes of shard `entry`, whose sha256 is the manifest's; else `BadInputError`."""
    try:
        data = read_bytes(source.fs, f"{source.folder}/{entry.file}")
    except FileNotFoundError:
        raise source.damaged(entry, manifest, "missing (the manifest lists it)") from None
    digest = sha256_bytes(data)
    if digest != entry.sha256:
        raise source.damaged(
            entry,
            manifest,
            f"sha256 {digest[:16]}... (the file changed after it was written)",
            f"{entry.sha256[:16]}... as manifest.json records",
        )
    return data


def read_shard(
    source: ShardSource,
    entry: ShardEntry,
    manifest: Manifest,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The shard `entry`, verified, with only `columns` (all when None). Raises `BadInputError`
    naming the shard when it is missing, its bytes differ from the manifest's sha256, or its rows,
    split, footer or values disagree with the manifest, or a sample id repeats."""
    data = verified_bytes(source, entry, manifest)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as err:  # a shard written by another tool
        raise source.damaged(entry, manifest, f"unreadable Parquet ({err})") from None
    problem = _shard_problem(table, entry, manifest)
    if problem:
        raise source.damaged(entry, manifest, *problem)
    return table.select(list(columns)) if columns is not None else table


def read_split(
    location: str, manifest: Manifest, split: str, columns: Sequence[str] | None = None
) -> pa.Table:
    """All rows of `split` under `location`, every shard verified, as one table read in this
    process (no Ray); a sample id in two shards is refused too."""
    source = ShardSource.of(location)
    table = pa.concat_tables(
        [read_shard(source, e, manifest) for e in manifest.entries(split, location)]
    )
    ids = table.column("sample_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise BadInputError(
            source.location,
            f"a sample_id in two shards of {split!r}",
            f"each sample once; {manifest.repair_hint(source.location)}",
        )
    return table.select(list(columns)) if columns is not None else table


def _shard_problem(
    table: pa.Table, entry: ShardEntry, manifest: Manifest
) -> tuple[str, str] | None:
    """`(what was found, what was expected)` for the first disagreement with the manifest."""
    header = json.loads((table.schema.metadata or {}).get(DATASET_KEY, b"null"))
    if header != json.loads(json.dumps(manifest.header())):
        return "the dataset facts of another conversion in its footer", "those of manifest.json"
    if table.num_rows != entry.rows:
        return f"{table.num_rows} rows", f"{entry.rows} as manifest.json records"
    splits = set(table.column("split").to_pylist())
    if splits - {entry.split}:
        return f"rows of split {sorted(splits)}", f"only {entry.split!r}"
    ids = table.column("sample_id")
    if pc.count_distinct(ids).as_py() != len(ids) or ids.null_count:
        return "a repeated or missing sample_id", "one row per sample"
    limits = (
        ("label", len(manifest.classes)),
        ("times", manifest.T),
        ("neurons", manifest.n_inputs),
    )
    for name, limit in limits:
        column = table.column(name)
        values = pc.list_flatten(column) if name != "label" else column
        low, high = pc.min_max(values).values()
        if low.as_py() is not None and not 0 <= low.as_py() <= high.as_py() < limit:
            return f"{name} from {low} to {high}", f"0 <= {name} < {limit}"
    return None
