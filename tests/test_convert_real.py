"""Conversions of fixed subsets of the real slices and stand-ins (`HM2BP_SHARED_DIR/data`), read
back through Ray Data and the decoder, checked against values computed here from the raw files."""

import gzip
import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from hm2bp.orchestration import cli
from hm2bp.pipelines.audio_coding import AudioCoding, encode_audio
from hm2bp.pipelines.convert import convert
from hm2bp.pipelines.dataset import read_shards
from hm2bp.pipelines.decode import decode_spikes
from hm2bp.pipelines.event_binning import EventBinning, bin_events
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.pipelines.nmnist import FACTS
from hm2bp.pipelines.rate_coding import RateCoding, rate_encode_batch
from hm2bp.pipelines.registry import get_reader
from hm2bp.pipelines.seeding import sample_rng
from hm2bp.tests.conftest import PROJECT_ROOT, shared_path
from hm2bp.tests.tiny_readers import Subset

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("ray_local")]

SENSOR = FACTS.input_shape  # (polarity, x, y): the N-MNIST ATIS crop


def rows_of(out):
    """All shard rows as a pyarrow table, through Ray Data."""
    import pyarrow as pa

    return pa.concat_tables(
        read_shards(str(out)).iter_batches(batch_format="pyarrow", batch_size=None)
    )


def idx_payload(path, header):
    with gzip.open(path) as f:
        return np.frombuffer(f.read()[header:], dtype=np.uint8)


def test_mnist_200_images_match_the_idx_file_and_the_encoder(tmp_path):
    folder = shared_path("data", "mnist")
    images = idx_payload(folder / "mnist-t10k-first8000-images-idx3-ubyte.gz", 16).reshape(
        -1, 28, 28
    )
    labels = idx_payload(folder / "mnist-t10k-first8000-labels-idx1-ubyte.gz", 8)
    summary = convert(
        Subset(get_reader("mnist"), 40),
        source=folder,
        out=str(tmp_path),
        seed=3,
        rows_per_shard=64,
        split="ratio:0.75",
    )
    m = read_manifest(str(tmp_path))
    assert summary.samples == 200 and (m.T, m.input_shape, m.split) == (400, (28, 28), "ratio:0.75")
    expected_counts = Counter(str(labels[i]) for i in range(0, 8000, 40))
    assert Counter(m.counts["train"]) + Counter(m.counts["val"]) == expected_counts
    assert set(m.sources) == {p.name for p in folder.iterdir()}
    for batch in read_shards(str(tmp_path)).iter_batches(batch_size=50, batch_format="pyarrow"):
        spikes, got = decode_spikes(batch, m.T, m.n_inputs)
        ids = batch.column("sample_id").to_pylist()
        rows = [int(i.rsplit("#", 1)[1]) for i in ids]
        assert got.tolist() == labels[rows].tolist()
        for b, (sample_id, row) in enumerate(zip(ids, rows, strict=True)):
            drawn = rate_encode_batch(images[row][None], RateCoding(), sample_rng(3, sample_id))
            assert np.array_equal(spikes[:, b], drawn[:, 0])


def distinct_triples(raw: bytes, dt_us=600, T=540):
    """Distinct (x, y, polarity, bin) of an N-MNIST file, straight from its 5-byte records."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y, p = b[:, 0], b[:, 1], b[:, 2] >> 7
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    step = (t + dt_us - 1) // dt_us + 1
    keep = step < T
    return len(set(zip(x[keep], y[keep], p[keep], step[keep], strict=True)))


def test_nmnist_100_spike_counts_equal_the_distinct_event_bins(tmp_path):
    folder = shared_path("data", "nmnist-small")
    reader = get_reader("nmnist")
    convert(Subset(reader, 10), source=folder, out=str(tmp_path), rows_per_shard=30)
    m = read_manifest(str(tmp_path))
    assert (m.samples, m.input_shape, m.n_inputs, m.T, m.dt_ms) == (
        100,
        (2, 34, 34),
        2312,
        540,
        0.6,
    )
    assert m.sources["."].startswith("listing-sha256:") and m.note == ""  # not stabilised
    table = rows_of(tmp_path)
    folders = Counter(int(r.sample_id.split("/")[1]) for r in reader.index(folder)[::10])
    assert Counter(table.column("label").to_pylist()) == folders  # Train/<digit>/<id>.bin
    for sample_id, times in zip(
        table.column("sample_id").to_pylist(), table.column("times").to_pylist(), strict=True
    ):
        assert len(times) == distinct_triples((folder / sample_id).read_bytes()), sample_id
    spikes, _ = decode_spikes(table.slice(0, 3), m.T, m.n_inputs)
    ref = table.slice(0, 3).column("sample_id").to_pylist()
    events = list(reader.load(folder, [r for r in reader.index(folder) if r.sample_id in ref]))
    for b, sample_id in enumerate(ref):
        t, n = bin_events(events[sorted(ref).index(sample_id)], EventBinning(), SENSOR)
        assert np.argwhere(spikes[:, b]).tolist() == np.stack([t, n], 1).tolist()


def test_nmnist_stabilised_is_recorded(tmp_path):
    folder = shared_path("data", "nmnist-small")
    convert(
        "nmnist",
        source=folder,
        out=str(tmp_path),
        reader_options={"stabilize": True},
        split="range:train=0-9",
    )
    m = read_manifest(str(tmp_path))
    assert m.samples == 10 and m.reader_options == {"stabilize": True} and "saccade" in m.note


def test_fsdd_40_recordings_speaker_independent(tmp_path):
    folder = shared_path("data", "fsdd", "recordings")
    reader = get_reader("wav", folder)
    convert(Subset(reader, 62), source=folder, out=str(tmp_path), split="group:speaker=theo")
    m = read_manifest(str(tmp_path))
    assert (m.samples, m.input_shape, m.encoder, m.T) == (41, (624,), "cochlea_bsa", 1000)
    table = rows_of(tmp_path)
    speakers = dict(
        zip(table.column("sample_id").to_pylist(), table.column("speaker").to_pylist(), strict=True)
    )
    val = read_shards(str(tmp_path), split="val", columns=["sample_id"]).take_all()
    assert {speakers[r["sample_id"]] for r in val} == {"theo"}
    subset = reader.index(folder)[::62]
    for ref in (subset[0], subset[-1]):
        clip = next(iter(reader.load(folder, [ref])))
        t, n = encode_audio(clip, AudioCoding(), np.random.default_rng(0))  # BSA draws nothing
        row = table.column("sample_id").to_pylist().index(ref.sample_id)
        assert table.column("times")[row].as_py() == t.tolist()
        assert table.column("neurons")[row].as_py() == n.tolist()


def test_ti46_synth_and_emnist_synth_keep_their_own_splits(tmp_path):
    ti46 = convert(
        Subset(get_reader("ti46"), 190),
        source=shared_path("data", "ti46-synth"),
        out=str(tmp_path / "ti46"),
    )
    m = read_manifest(str(tmp_path / "ti46"))
    assert m.split == "source" and set(m.counts) == {"train", "test"} and ti46.samples == 11
    assert "speaker" in pq.read_schema(tmp_path / "ti46" / m.shards[0].file).names
    source = shared_path("data", "emnist-synth", "gzip")
    emnist = convert(
        Subset(get_reader("emnist"), 2350), source=source, out=str(tmp_path / "emnist")
    )
    m = read_manifest(str(tmp_path / "emnist"))
    assert emnist.samples == 10 and len(m.classes) == 47 and set(m.counts) == {"train", "test"}
    assert sum(m.counts["test"].values()) == 2  # the test file comes first: rows 0 and 2350


def test_cli_converts_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "digits"
    args = ["--T", "100", "--seed", "2", "--split", "ratio:0.9", "--rows-per-shard", "500"]
    assert cli.main(["convert", "digits", "--out", str(out), *args, "--keep-pixels"]) == 0
    printed = capsys.readouterr().out
    assert "samples  1797 (train 1618, val 179)" in printed and "spikes per sample" not in printed
    m = read_manifest(str(out))
    assert (m.dataset, m.T, m.seed, m.keep_pixels, m.input_shape) == (
        "digits",
        100,
        2,
        True,
        (8, 8),
    )
    first = json.loads((out / "manifest.json").read_text())["shards"][0]["file"]
    assert first.startswith("train-00000-") and first.endswith(".parquet")
    val = read_shards(str(out), split="val").iter_batches(batch_size=64, batch_format="pyarrow")
    batches = [decode_spikes(batch, m.T, m.n_inputs) for batch in val]
    assert sum(len(labels) for _, labels in batches) == 179 and batches[0][0].shape == (100, 64, 64)
    assert cli.main(["convert", "digits", "--out", str(out), "--split", "halves"]) == 1
    assert "split 'halves': not understood" in capsys.readouterr().err


def test_the_reading_example_in_docs_runs(tmp_path, monkeypatch, capsys):
    text = (PROJECT_ROOT / "docs" / "shards.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/shards.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "64 (100, 30, 64) int64"
