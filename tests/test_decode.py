"""The decoder: shard rows to dense [T, B, N] spikes, on every batch shape Ray Data produces."""

import numpy as np
import pyarrow as pa
import pytest
from hm2bp.pipelines.decode import decode_pixels, decode_spikes


def table(rows):
    """rows: list of (label, times, neurons)."""
    return pa.table(
        {
            "label": pa.array([r[0] for r in rows], pa.int16()),
            "times": pa.array([r[1] for r in rows], pa.list_(pa.uint16())),
            "neurons": pa.array([r[2] for r in rows], pa.list_(pa.uint32())),
        }
    )


def as_numpy(tbl):
    """A dict of numpy arrays the way Ray Data's numpy batches hold list columns."""
    out = {"label": tbl.column("label").to_numpy()}
    for name in ("times", "neurons"):
        out[name] = np.empty(tbl.num_rows, dtype=object)
        out[name][:] = [np.asarray(v, dtype=np.int64) for v in tbl.column(name).to_pylist()]
    return out


ROWS = [(3, [0, 2, 2], [1, 0, 4]), (1, [], []), (0, [4], [4])]


def expected(rows, T=5, N=6):
    dense = np.zeros((T, len(rows), N), np.uint8)
    for b, (_, times, neurons) in enumerate(rows):
        for t, n in zip(times, neurons, strict=True):
            dense[t, b, n] = 1
    return dense


@pytest.mark.parametrize("form", ["table", "record_batch", "chunked", "sliced", "numpy"])
def test_every_batch_form_decodes_alike(form):
    tbl = table(ROWS)
    batch = {
        "table": tbl,
        "record_batch": tbl.to_batches()[0],
        "chunked": pa.concat_tables([table(ROWS[:1]), table(ROWS[1:])]),
        "sliced": table([(9, [1], [1]), *ROWS]).slice(1),
        "numpy": as_numpy(tbl),
    }[form]
    spikes, labels = decode_spikes(batch, T=5, n_inputs=6)
    assert spikes.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(spikes, expected(ROWS)) and labels.tolist() == [3, 1, 0]


def test_one_row_all_empty_and_no_rows():
    spikes, labels = decode_spikes(table([(2, [1], [3])]), T=5, n_inputs=6)
    assert spikes.shape == (5, 1, 6) and spikes.sum() == 1 and labels.tolist() == [2]
    spikes, _ = decode_spikes(table([(0, [], []), (1, [], [])]), T=5, n_inputs=6)
    assert spikes.shape == (5, 2, 6) and spikes.sum() == 0
    spikes, labels = decode_spikes(table([(0, [], [])]).slice(0, 0), T=5, n_inputs=6)
    assert spikes.shape == (5, 0, 6) and labels.shape == (0,)


def test_numpy_batches_of_equal_lengths_arrive_as_2d_arrays():
    batch = {
        "label": np.array([0, 1]),
        "times": np.array([[1, 2], [0, 4]]),
        "neurons": np.array([[0, 0], [5, 5]]),
    }
    spikes, _ = decode_spikes(batch, T=5, n_inputs=6)
    assert np.argwhere(spikes).tolist() == [[0, 1, 5], [1, 0, 0], [2, 0, 0], [4, 1, 5]]


def test_spikes_outside_the_manifest_raise():
    with pytest.raises(ValueError, match="expected steps < T=4"):
        decode_spikes(table(ROWS), T=4, n_inputs=6)
    with pytest.raises(ValueError, match="lengths differ"):
        decode_spikes(table([(0, [1, 2], [1])]), T=5, n_inputs=6)


def test_pixels_decode_from_binary_columns():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    tbl = pa.table({"pixels": pa.array([im.tobytes() for im in images], pa.binary())})
    assert np.array_equal(decode_pixels(tbl, (3, 4)), images)
    assert np.array_equal(decode_pixels(tbl.slice(1), (3, 4)), images[1:])
    column = np.empty(2, dtype=object)
    column[:] = [im.tobytes() for im in images]
    assert np.array_equal(decode_pixels({"pixels": column}, (3, 4)), images)
