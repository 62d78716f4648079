"""MNIST: the real first 8,000 test images, and standard-named folders written here."""

import gzip
import zlib

import numpy as np
import pytest
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.mnist import MNIST
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.formats import write_idx

SLICE_IMAGES = "mnist-t10k-first8000-images-idx3-ubyte.gz"
SLICE_LABELS = "mnist-t10k-first8000-labels-idx1-ubyte.gz"


def raw_idx(path, offset):
    """The values of an IDX file parsed independently of the reader: gunzip, skip the header."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=offset)


@pytest.mark.shared
def test_real_slice_counts_labels_and_pixels():
    folder = shared_path("data", "mnist")
    refs = MNIST().index(folder)
    labels = np.array([ref.label for ref in refs])
    expected = raw_idx(folder / SLICE_LABELS, offset=8)
    assert len(refs) == 8000
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(expected))
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # MNIST's test set opens so
    assert {ref.split for ref in refs} == {"test"}
    assert refs[0].sample_id == "mnist-t10k-first8000-images-idx3-ubyte#0"

    pick = [0, 1, 4321, 7999]
    images = list(MNIST().load(folder, [refs[i] for i in pick]))
    pixels = raw_idx(folder / SLICE_IMAGES, offset=16).reshape(8000, 28, 28)
    for i, image in zip(pick, images, strict=True):
        assert image.shape == (28, 28) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, pixels[i])
    assert images[0].max() == 255 and images[0].min() == 0


@pytest.mark.shared
def test_either_file_of_the_pair_is_a_source():
    folder = shared_path("data", "mnist")
    from_folder = MNIST().index(folder)
    assert MNIST().index(folder / SLICE_IMAGES) == from_folder
    assert MNIST().index(folder / SLICE_LABELS) == from_folder


def test_standard_folder_both_splits_any_order(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte", [3, 1, 4, 1, 5])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", [9, 2, 6])
    refs = MNIST().index(tmp_path)
    assert [(r.split, r.label) for r in refs] == [("test", 9), ("test", 2), ("test", 6)] + [
        ("train", label) for label in [3, 1, 4, 1, 5]
    ]
    order = [6, 0, 3, 7, 2]
    images = list(MNIST().load(tmp_path, [refs[i] for i in order]))
    expected = np.concatenate([test, train])
    for i, image in zip(order, images, strict=True):
        np.testing.assert_array_equal(image, expected[i])


@pytest.mark.parametrize(
    ("labels", "shape", "match"),
    [
        ([1, 10], (2, 28, 28), "label 10 at row 1"),
        ([1], (2, 28, 28), "1 labels"),
        ([1, 2], (2, 32, 32), "images of"),
    ],
)
def test_inconsistent_pairs_are_refused(tmp_path, labels, shape, match):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(shape))
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(BadInputError, match=match):
        MNIST().index(tmp_path)


def test_no_source():
    with pytest.raises(BadInputError, match="no source"):
        MNIST().index(None)


def flip_only_the_crc_sees(data: bytes) -> bytes:
    """`data` (a gzip file with a 10-byte header) with one bit of its deflate stream flipped such
    that the stream still decodes, to as many bytes, but other ones: what only the CRC catches."""
    intact = zlib.decompress(data[10:-8], wbits=-15)
    for at in range(len(data) // 2, len(data) - 8):
        changed = bytearray(data)
        changed[at] ^= 0x01
        try:
            out = zlib.decompress(bytes(changed[10:-8]), wbits=-15)
        except zlib.error:
            continue
        if len(out) == len(intact) and out != intact:
            return bytes(changed)
    raise AssertionError("no such flip")


def test_a_flipped_byte_in_a_gzip_file_stops_the_index_or_is_skipped(tmp_path):
    """The issue's case: 40 gzipped images, one bit flipped in the compressed data; the trailer's
    ISIZE still matched, so the size check passed and 22 of 40 samples got wrong spikes. The CRC
    check at the end of the stream, made once when indexing, refuses the file."""
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", [4, 2])
    images = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(40) % 10)
    images.write_bytes(flip_only_the_crc_sees(images.read_bytes()))
    with pytest.raises(BadInputError, match="CRC check failed") as err:
        MNIST().index(tmp_path)
    assert err.value.path == str(images)

    index = MNIST().index(tmp_path, skip_bad=True)
    assert [(ref.sample_id, ref.label) for ref in index] == [
        ("train-images-idx3-ubyte#0", 4),
        ("train-images-idx3-ubyte#1", 2),
    ]
    (skipped,) = index.skipped
    assert skipped.path == str(images) and "CRC check failed" in skipped.reason
