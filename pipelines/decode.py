"""Sparse shard rows to dense spike tensors, vectorised over the whole batch.

A trainer's batch arrives from Ray Data either as a pyarrow table (`batch_format="pyarrow"`, the
fast path: the list columns are one offsets array and one values array, read without copying) or as
a dict of numpy arrays (`batch_format="numpy"`: one small array per row). Either way the spikes of
all rows are gathered into flat `(time, row, neuron)` index arrays and scattered into the dense
tensor with a single fancy-indexing assignment; no Python loop runs over spikes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

Batch = pa.Table | pa.RecordBatch | Mapping[str, np.ndarray]


def _flat_list(batch: Batch, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`(values, offsets)` of a list column: row i holds `values[offsets[i]:offsets[i + 1]]`."""
    if isinstance(batch, pa.Table | pa.RecordBatch):
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if column.null_count:
            raise ValueError(f"column {name!r}: {column.null_count} null rows (expected lists)")
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy()[offsets[0] : offsets[-1]]
        return values, offsets - offsets[0]
    column = batch[name]
    if column.dtype != object:  # Ray Data gives a 2-D array when every row has the same length
        rows = column.reshape(len(column), -1)
        return rows.ravel(), np.arange(len(rows) + 1) * rows.shape[1]
    lengths = np.fromiter((len(row) for row in column), dtype=np.int64, count=len(column))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate(list(column)) if len(column) else np.zeros(0, dtype=np.int64)
    return values, offsets


def _column(batch: Batch, name: str) -> np.ndarray:
    if isinstance(batch, pa.Table | pa.RecordBatch):
        return batch.column(name).to_numpy()
    return np.asarray(batch[name])


def decode_spikes(batch: Batch, T: int, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense spikes `uint8 [T, B, N]` and labels `int64 [B]` from a batch of shard rows.

    `T` and `n_inputs` come from the manifest (`Manifest.T`, `Manifest.n_inputs`); a spike outside
    them raises rather than being dropped, since it means the shards and manifest disagree.
    """
    times, t_offsets = _flat_list(batch, "times")
    neurons, n_offsets = _flat_list(batch, "neurons")
    if not np.array_equal(t_offsets, n_offsets):
        raise ValueError(
            "columns 'times' and 'neurons': lengths differ within a row (expected equal)"
        )
    labels = _column(batch, "label").astype(np.int64)
    rows = np.repeat(np.arange(len(labels)), np.diff(t_offsets))
    if len(times) and (times.max() >= T or neurons.max() >= n_inputs):
        raise ValueError(
            f"spikes reach step {times.max()} / input {neurons.max()} (expected steps < T={T} and "
            f"inputs < {n_inputs}, as the manifest says)"
        )
    spikes = np.zeros((T, len(labels), n_inputs), dtype=np.uint8)
    spikes[times, rows, neurons] = 1
    return spikes, labels


def decode_pixels(batch: Batch, shape: tuple[int, ...]) -> np.ndarray:
    """Raw images `uint8 [B, *shape]` from the `pixels` column (shards written with
    `keep_pixels`), for re-encoding with fresh draws and augmentation each epoch."""
    if len(batch["pixels"]) == 0:
        return np.zeros((0, *shape), dtype=np.uint8)
    if isinstance(batch, pa.Table | pa.RecordBatch):
        column = batch.column("pixels")
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        _, offsets_buffer, data_buffer = column.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[column.offset :][: len(column) + 1]
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    else:
        data = np.frombuffer(b"".join(batch["pixels"]), dtype=np.uint8)
    return data.reshape(-1, *shape)
