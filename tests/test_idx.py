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
        idx.read_header(path, idx.IMAGES_MAGIC)
    assert err.value.path == str(path)
    assert "[3, 4, 5]" in err.value.expected


def test_truncated_gzip_stream_is_refused(tmp_path):
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", IMAGES)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(BadInputError, match="gzip") as err:
        idx.read_header(path, idx.IMAGES_MAGIC)
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
    pairs = idx.find_pairs(tmp_path)
    assert [(p.images.name, p.labels.name, p.split) for p in pairs] == [
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte", "test"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz", "train"),
    ]
    # either file of a pair names the pair
    one = idx.find_pairs(tmp_path / "t10k-labels-idx1-ubyte")
    assert [(p.images.name, p.split) for p in one] == [("t10k-images-idx3-ubyte.gz", "test")]


def test_missing_partner_or_no_idx_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES)
    with pytest.raises(BadInputError, match="train-labels-idx1-ubyte"):
        idx.find_pairs(tmp_path)
    with pytest.raises(BadInputError, match="no IDX images file"):
        idx.find_pairs(tmp_path, prefix="emnist-")
