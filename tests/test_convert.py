"""Conversion on a real local Ray: shards, manifest, resume, bad input, destinations.

Uses the small in-memory readers of `tiny_readers.py`; the real data sets are converted in
`test_convert_real.py`.
"""

import json
import os
from importlib.metadata import version

import numpy as np
import pyarrow.parquet as pq
import pytest
from hm2bp.pipelines.checksums import sha256_file
from hm2bp.pipelines.convert import convert
from hm2bp.pipelines.dataset import read_shards
from hm2bp.pipelines.decode import decode_pixels, decode_spikes
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.pipelines.rate_coding import RateCoding, rate_encode, rate_encode_batch
from hm2bp.pipelines.seeding import sample_rng
from hm2bp.pipelines.shard_plan import plan_shards
from hm2bp.pipelines.shards import DATASET_KEY
from hm2bp.pipelines.splits import RatioSplit
from hm2bp.tests.tiny_readers import TinyImages, tiny_image

pytestmark = pytest.mark.usefixtures("ray_local")


def shard_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".parquet")


def read_all(folder):
    return pq.ParquetDataset([str(folder / f) for f in shard_files(folder)]).read().to_pylist()


def test_shards_hold_every_sample_once_with_the_encoders_spikes(tmp_path):
    summary = convert(TinyImages(n=30), out=str(tmp_path), rows_per_shard=7, seed=5, T=60)
    rows = read_all(tmp_path)
    assert summary.samples == 30 == len(rows) == len({r["sample_id"] for r in rows})
    for row in rows:
        i = int(row["sample_id"][3:])
        times, neurons = rate_encode(
            tiny_image(i), RateCoding(T=60), sample_rng(5, row["sample_id"])
        )
        assert row["label"] == i % 3 and row["speaker"] == f"s{i % 4}"
        assert row["times"] == times.tolist() and row["neurons"] == neurons.tolist()
    assert summary.spikes == sum(len(r["times"]) for r in rows)
    # and through Ray Data and the decoder, dense as the encoder draws it
    dataset = read_shards(str(tmp_path))
    for batch in dataset.iter_batches(batch_size=9, batch_format="pyarrow"):
        spikes, labels = decode_spikes(batch, T=60, n_inputs=30)
        ids = batch.column("sample_id").to_pylist()
        pixels = np.stack([tiny_image(int(i[3:])) for i in ids])
        expected = np.stack(
            [
                rate_encode_batch(p[None], RateCoding(T=60), sample_rng(5, i))[:, 0]
                for p, i in zip(pixels, ids, strict=True)
            ],
            axis=1,
        )
        assert np.array_equal(spikes, expected) and labels.tolist() == [int(i[3:]) % 3 for i in ids]


def test_manifest_records_constants_counts_and_checksums(tmp_path):
    convert(TinyImages(n=30), out=str(tmp_path), rows_per_shard=7, seed=5, split="ratio:0.5")
    m = read_manifest(str(tmp_path))
    assert (m.dataset, m.kind, m.classes, m.input_shape, m.n_inputs) == (
        "tiny",
        "image",
        ("zero", "one", "two"),
        (6, 5),
        30,
    )
    assert (m.T, m.dt_ms, m.encoder, m.seed, m.split) == (400, 1.0, "rate", 5, "ratio:0.5")
    assert m.encoding() == RateCoding() and m.software["hm2bp"] == version("hm2bp")
    assert m.counts == {
        "train": {"zero": 5, "one": 5, "two": 5},
        "val": {"zero": 5, "one": 5, "two": 5},
    }
    assert shard_files(tmp_path) == sorted(e.file for e in m.shards)
    conversion = m.shards[0].file[-16:-8]  # the fingerprint's first 8 hex digits
    assert [e.file for e in m.shards][:3] == [
        f"train-00000-{conversion}.parquet",
        f"train-00001-{conversion}.parquet",
        f"train-00002-{conversion}.parquet",
    ]
    for entry in m.shards:
        assert sha256_file(tmp_path / entry.file) == entry.sha256
        parquet = pq.ParquetFile(tmp_path / entry.file)
        assert parquet.metadata.num_rows == entry.rows
        assert json.loads(parquet.schema_arrow.metadata[DATASET_KEY]) == json.loads(
            json.dumps(m.header())
        )
    schema = pq.read_schema(tmp_path / m.shards[0].file)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("sample_id", "string"),
        ("label", "int16"),
        ("split", "string"),
        ("times", "list<element: uint16>"),
        ("neurons", "list<element: uint32>"),
        ("speaker", "string"),
    ]


def test_reading_back_through_ray_data_gives_dense_batches(tmp_path):
    convert(TinyImages(n=30), out=f"file://{tmp_path}", rows_per_shard=8, split="group:speaker=s1")
    m = read_manifest(f"file://{tmp_path}")
    assert m.counts["val"] == {"zero": 2, "one": 3, "two": 3}  # ids 1, 5, ..., 29
    val = read_shards(str(tmp_path), split="val").iter_batches(batch_size=5, batch_format="pyarrow")
    batches = [decode_spikes(batch, m.T, m.n_inputs) for batch in val]
    assert [x.shape for x, _ in batches] == [(400, 5, 30), (400, 3, 30)]
    ids = read_shards(str(tmp_path), split="val", columns=["sample_id"]).take_all()
    assert sorted(int(r["sample_id"][3:]) for r in ids) == list(range(1, 30, 4))
    with pytest.raises(ValueError, match="no shards for 'test'"):
        read_shards(str(tmp_path), split="test")


def test_kept_pixels_are_the_raw_images_also_in_numpy_batches(tmp_path):
    convert(TinyImages(n=10), out=str(tmp_path), keep_pixels=True, split="range:train=0-9", T=50)
    table = pq.read_table(tmp_path / read_manifest(str(tmp_path)).shards[0].file)
    images = decode_pixels(table, (6, 5))
    for sample_id, image in zip(table.column("sample_id").to_pylist(), images, strict=True):
        assert np.array_equal(image, tiny_image(int(sample_id[3:])))
    # Ray Data's numpy batches (object arrays per row, down to B = 1) decode the same
    for batch in read_shards(str(tmp_path)).iter_batches(batch_size=3, batch_format="numpy"):
        spikes, _ = decode_spikes(batch, T=50, n_inputs=30)
        pixels = decode_pixels(batch, (6, 5))
        for b, sample_id in enumerate(batch["sample_id"]):
            assert np.array_equal(pixels[b], tiny_image(int(sample_id[3:])))
            drawn = rate_encode_batch(pixels[b][None], RateCoding(T=50), sample_rng(0, sample_id))
            assert np.array_equal(spikes[:, b], drawn[:, 0])


def test_an_interrupted_conversion_resumes_without_loss_or_duplicates(tmp_path):
    out, marker = tmp_path / "shards", tmp_path / "fault-fired"
    # The fault hits the last shard planned, so that the shards before it finish first.
    refs = TinyImages(n=40).index(None)
    last = plan_shards(refs, RatioSplit(0.75).assign(refs, 0), 5, 0, "")[-1].refs[0].sample_id
    reader = TinyImages(n=40, flaky=(last,), flaky_marker=str(marker))
    with pytest.raises(RuntimeError, match=f"injected fault at {last}"):
        convert(reader, out=str(out), rows_per_shard=5, split="ratio:0.75")
    assert marker.exists() and not (out / "manifest.json").exists()
    survivors = {f: os.stat(out / f).st_mtime_ns for f in shard_files(out)}
    assert 1 <= len(survivors) < 8 and all(pq.read_metadata(out / f) for f in survivors)
    (out / f".val-00001.parquet.tmp-{'0' * 32}").write_bytes(b"PAR1 half a shard")

    summary = convert(reader, out=str(out), rows_per_shard=5, split="ratio:0.75")
    rows = read_all(out)
    assert sorted(r["sample_id"] for r in rows) == [f"img{i:03d}" for i in range(40)]
    assert summary.shards_reused == len(survivors) and summary.shards_written == 8 - len(survivors)
    assert all(os.stat(out / f).st_mtime_ns == t for f, t in survivors.items())
    assert not any(name.startswith(".") for name in os.listdir(out))  # leftovers removed
    fresh = tmp_path / "fresh"
    convert(TinyImages(n=40), out=str(fresh), rows_per_shard=5, split="ratio:0.75")
    assert read_manifest(str(out)).shards == read_manifest(str(fresh)).shards  # same bytes


def test_a_rerun_trusts_only_shards_that_match(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    again = convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    assert (again.shards_written, again.shards_reused) == (0, 5)
    victim = tmp_path / read_manifest(str(tmp_path)).shards[0].file
    victim.write_bytes(victim.read_bytes()[:-20])  # a damaged footer
    assert convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5).shards_written == 1
    reseeded = convert(
        TinyImages(n=20), out=str(tmp_path), rows_per_shard=5, seed=1, overwrite=True
    )
    assert reseeded.shards_written == 5
    regrouped = convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=20, overwrite=True)
    assert [f[:9] for f in shard_files(tmp_path)] == ["train-000", "val-00000"]
    assert regrouped.samples == 20


def test_bad_input_fails_naming_the_file_or_is_skipped_and_listed(tmp_path):
    reader = TinyImages(n=20, bad=("img004", "img013"))
    with pytest.raises(
        BadInputError, match=r"img0(04|13)\.img: truncated payload \(expected 30 bytes\)"
    ):
        convert(reader, out=str(tmp_path / "strict"))
    summary = convert(reader, out=str(tmp_path / "lenient"), skip_bad=True, rows_per_shard=6)
    m = read_manifest(str(tmp_path / "lenient"))
    assert summary.samples == m.samples == 18
    assert sorted((s.path, s.reason, s.sample_ids) for s in m.skipped) == [
        ("img004.img", "truncated payload (expected 30 bytes)", ("img004",)),
        ("img013.img", "truncated payload (expected 30 bytes)", ("img013",)),
    ]
    assert "img004" not in {r["sample_id"] for r in read_all(tmp_path / "lenient")}
    assert "skipped  img004.img: truncated payload" in summary.format()


def test_options_that_do_not_fit_are_refused(tmp_path):
    from hm2bp.pipelines.event_binning import EventBinning

    with pytest.raises(ValueError, match="'event_binning' for 'tiny', a data set of kind 'image'"):
        convert(TinyImages(), out=str(tmp_path), encoder=EventBinning())
    with pytest.raises(ValueError, match="T: got 70000"):
        convert(TinyImages(), out=str(tmp_path), T=70000)
    with pytest.raises(ValueError, match="rows_per_shard: got 0"):
        convert(TinyImages(), out=str(tmp_path), rows_per_shard=0)


def test_skip_bad_lists_a_file_the_index_refuses_and_converts_the_rest(tmp_path):
    """A broken gzip stream is found when indexing, on the driver, before any task: it stops the
    conversion naming the file, or under `skip_bad` is listed in the manifest."""
    from hm2bp.tests.formats import write_idx

    source = tmp_path / "mnist"
    source.mkdir()
    rng = np.random.default_rng(3)
    write_idx(source / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    write_idx(source / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4, 5])
    bad = write_idx(source / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    write_idx(source / "t10k-labels-idx1-ubyte.gz", [6, 7, 8, 9])
    bad.write_bytes(bad.read_bytes()[:-4])  # the trailer's length cut off
    with pytest.raises(BadInputError, match="broken gzip stream") as err:
        convert("mnist", source=source, out=str(tmp_path / "strict"), T=20)
    assert err.value.path == str(bad) and not (tmp_path / "strict" / "manifest.json").exists()

    out = tmp_path / "lenient"
    # the default split would carve a test set out of the training files: asked for instead
    with pytest.raises(BadInputError, match="only the 'train' split of the source's own"):
        convert("mnist", source=source, out=str(out), T=20, skip_bad=True)
    summary = convert("mnist", source=source, out=str(out), T=20, skip_bad=True, split="ratio:0.5")
    m = read_manifest(str(out))
    assert summary.samples == m.samples == 6
    assert [(s.path, s.sample_ids) for s in m.skipped] == [(str(bad), ())]
    assert m.skipped[0].reason.startswith("broken gzip stream")
    assert sorted(r["sample_id"] for r in read_all(out)) == [
        f"train-images-idx3-ubyte#{i}" for i in range(6)
    ]
    assert f"skipped  {bad}: broken gzip stream" in summary.format()
