"""The IDX format shared by MNIST and EMNIST: gzip sniffed, headers checked, pairs found by name."""

import gzip
import pickle

import numpy as np
import pytest
from hm2bp.pipelines import idx
from hm2bp.pipelines.errors import BadInputError
from hm2bp.tests.formats import write_idx

IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@pytest.mark.parametrize("gz", [False, True])
def test_plain_and_gzip_read_the_same(tmp_path, gz):
    path = write_idx(tmp_path / "x-images-idx3-ubyte", IMAGES, gz=gz)
    header = idx.read_header(path, idx.IMAGES_MAGIC)
    assert (header.shape, header.gzipped) == ((3, 4, 5), gz)
    rows = idx.read_images(path, [2, 0])
    np.testing.assert_array_equal(rows[0], IMAGES[0])
    np.testing.assert_array_equal(rows[2], IMAGES[2])


def test_gzip_is_sniffed_not_guessed_from_the_name(tmp_path):
    plain_named_gz = write_idx(tmp_path / "a-labels-idx1-ubyte.gz", [1, 2, 3], gz=False)
    gzip_named_plain = write_idx(tmp_path / "b-labels-idx1-ubyte", [4, 5], gz=True)
    assert idx.read_labels(plain_named_gz).tolist() == [1, 2, 3]
    assert idx.read_labels(gzip_named_plain).tolist() == [4, 5]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("change", ["truncated", "padded"])
def test_payload_size_must_match_the_header(tmp_path, gz, change):
    path = tmp_path / "x-images-idx3-ubyte"
    raw = write_idx(path, IMAGES, gz=False).read_bytes()
    raw = raw[:-7] if change == "truncated" else raw + b"\0"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(BadInputError, match="payload bytes") as err:
        idx.verify(path, idx.IMAGES_MAGIC)
    assert err.value.path == str(path)
    assert "[3, 4, 5]" in err.value.expected


def test_truncated_gzip_stream_is_refused(tmp_path):
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", IMAGES)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(BadInputError, match="gzip") as err:
        idx.verify(path, idx.IMAGES_MAGIC)
    assert err.value.path == str(path)


def test_wrong_magic_names_the_file_and_both_magics(tmp_path):
    labels = write_idx(tmp_path / "x-labels-idx1-ubyte", [1, 2, 3])
    with pytest.raises(BadInputError) as err:
        idx.read_header(labels, idx.IMAGES_MAGIC)
    assert str(labels) in str(err.value)
    assert "2049" in err.value.problem and "2051" in err.value.expected
    assert pickle.loads(pickle.dumps(err.value)).path == str(labels)  # crosses Ray tasks


def test_file_shorter_than_its_header(tmp_path):
    path = tmp_path / "x-images-idx3-ubyte"
    path.write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(BadInputError, match="header"):
        idx.read_header(path, idx.IMAGES_MAGIC)


def test_pairs_by_name_split_from_name_plain_preferred(tmp_path):
    for name in [
        "train-images-idx3-ubyte",
        "train-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ]:
        write_idx(tmp_path / name, IMAGES)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2])
    (tmp_path / "README").write_text("not IDX")
    pairs = [idx.pair_of(images) for images in idx.find_images(tmp_path)]
    assert [(p.images.name, p.labels.name, p.split) for p in pairs] == [
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte", "test"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz", "train"),
    ]
    # either file of a pair names the pair
    one = idx.find_images(tmp_path / "t10k-labels-idx1-ubyte")
    assert [(p.name, idx.pair_of(p).split) for p in one] == [("t10k-images-idx3-ubyte.gz", "test")]


def test_missing_partner_or_no_idx_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES)
    (images,) = idx.find_images(tmp_path)
    with pytest.raises(BadInputError, match="train-labels-idx1-ubyte"):
        idx.pair_of(images)
    with pytest.raises(BadInputError, match="no IDX images file"):
        idx.find_images(tmp_path, prefix="emnist-")


def flips(data: bytes):
    """`data` with one byte changed, every byte in turn, by three masks: its lowest bit, its
    highest bit, all its bits."""
    for at in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            changed = bytearray(data)
            changed[at] ^= mask
            yield at, bytes(changed)


@pytest.mark.parametrize(
    ("name", "values", "magic"),
    [
        ("x-images-idx3-ubyte.gz", IMAGES, idx.IMAGES_MAGIC),
        ("x-labels-idx1-ubyte.gz", [1, 2, 3], idx.LABELS_MAGIC),
    ],
)
def test_every_flipped_byte_of_a_gzip_file_is_caught_or_changes_nothing(
    tmp_path, name, values, magic
):
    """gzip carries a CRC-32 and the length of its data, which `verify` meets by decompressing to
    the end. So any flipped byte is refused naming the file, or changes nothing read: the gzip
    header's time stamp, XFL and OS bytes, its FTEXT hint and reserved flag bit, the unused bits
    after the last deflate block."""
    path = write_idx(tmp_path / name, values)
    unchanged = 0
    for _, data in flips(path.read_bytes()):
        path.write_bytes(data)
        try:
            header = idx.verify(path, magic)
        except BadInputError as err:
            assert err.path == str(path)
            continue
        if magic == idx.IMAGES_MAGIC:
            rows = idx.read_images(path, range(header.shape[0]))
            np.testing.assert_array_equal(np.stack([rows[row] for row in range(3)]), values)
        else:
            assert idx.read_labels(path).tolist() == values
        unchanged += 1
    assert 0 < unchanged < 30  # of about 270 flips


def test_a_crc_error_is_caught_once_by_verify_not_in_every_task(tmp_path):
    """`verify` runs once per file on the driver (`index_pairs`); a task reads the header and
    the rows it needs only, so a CRC error past them is not its to find. A stream that breaks
    before the rows it needs is still a `BadInputError` naming the file."""
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", IMAGES)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0x01  # the trailer's CRC-32
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="CRC check failed") as err:
        idx.verify(path, idx.IMAGES_MAGIC)
    assert err.value.path == str(path)
    np.testing.assert_array_equal(idx.read_images(path, [2])[2], IMAGES[2])

    path.write_bytes(bytes(data[:-20]))  # cut inside the deflate stream
    with pytest.raises(BadInputError, match="broken gzip stream") as err:
        idx.read_images(path, [2])
    assert err.value.path == str(path)


def test_a_plain_file_checks_its_header_not_its_values(tmp_path):
    """A plain IDX file carries no checksum. Every flip in its header is caught (the magic, or a
    dimension that no longer fits the file's size); a flipped value byte (a pixel here) keeps the
    size and is undetectable."""
    path = write_idx(tmp_path / "x-images-idx3-ubyte", IMAGES)
    intact = path.read_bytes()
    for at, data in flips(intact[:16]):
        path.write_bytes(data + intact[16:])
        with pytest.raises(BadInputError) as err:
            idx.verify(path, idx.IMAGES_MAGIC)
        assert err.value.path == str(path), at
    pixel = bytearray(intact)
    pixel[16 + 7] ^= 0x01
    path.write_bytes(bytes(pixel))
    idx.verify(path, idx.IMAGES_MAGIC)
    assert idx.read_images(path, [0])[0][1, 2] == IMAGES[0, 1, 2] ^ 0x01  # undetectable


def test_index_pairs_skips_a_bad_pair_only_when_asked(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES)
    write_idx(tmp_path / "train-labels-idx1-ubyte", [0, 1, 2])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", IMAGES[:2])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2])
    images = idx.find_images(tmp_path)
    with pytest.raises(BadInputError, match="3 labels"):
        idx.index_pairs(tmp_path, images, range(3), (4, 5))
    index = idx.index_pairs(tmp_path, images, range(3), (4, 5), skip_bad=True)
    assert [ref.sample_id for ref in index] == [f"train-images-idx3-ubyte#{i}" for i in range(3)]
    ((path, reason, ids),) = [(s.path, s.reason, s.sample_ids) for s in index.skipped]
    assert (path, reason, ids) == (
        str(tmp_path / "t10k-labels-idx1-ubyte"),
        "3 labels (expected 2, one per image of t10k-images-idx3-ubyte)",
        (),
    )
