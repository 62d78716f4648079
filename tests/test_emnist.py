"""EMNIST: the synthetic Balanced stand-in, and fixtures for transposition and the label
conventions of every split."""

import gzip

import numpy as np
import pytest
from hm2bp.pipelines.emnist import EMNIST, SPLITS, read_mapping
from hm2bp.pipelines.errors import BadInputError
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.formats import write_idx


def write_split(folder, split, images, labels, mapping):
    """An EMNIST split's training files and mapping, as EMNIST's `gzip` folder holds them."""
    write_idx(folder / f"emnist-{split}-train-images-idx3-ubyte.gz", images)
    write_idx(folder / f"emnist-{split}-train-labels-idx1-ubyte.gz", labels)
    (folder / f"emnist-{split}-mapping.txt").write_text(mapping)


def ell() -> np.ndarray:
    """An upright "L": a bar down the left column and a foot along the bottom row."""
    glyph = np.zeros((28, 28), np.uint8)
    glyph[4:24, 6] = 255
    glyph[23, 6:20] = 255
    return glyph


@pytest.mark.shared
def test_balanced_stand_in():
    folder = shared_path("data", "emnist-synth", "gzip")
    reader = EMNIST("balanced")
    refs = reader.index(folder)
    splits = [ref.split for ref in refs]
    assert (splits.count("train"), splits.count("test")) == (18800, 4700)
    assert len(reader.facts.classes) == 47 == len({ref.label for ref in refs})
    assert reader.facts.classes[10] == "A" and reader.facts.classes[-1] == "t"
    assert reader.facts.source_labels == ()  # Balanced's labels are its class indices

    some = [refs[0], refs[4699], refs[4700], refs[-1]]
    images = list(reader.load(folder, some))
    stored = gzip.decompress((folder / "emnist-balanced-test-images-idx3-ubyte.gz").read_bytes())
    first_stored = np.frombuffer(stored, np.uint8, 784, offset=16).reshape(28, 28)
    np.testing.assert_array_equal(images[0], first_stored.T)
    for image in images:
        assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 0


def test_images_stored_transposed_come_out_upright(tmp_path):
    mapping = "".join(f"{i} {48 + i}\n" for i in range(10))
    write_split(tmp_path, "digits", [ell().T], [1], mapping)  # EMNIST stores the transpose
    (image,) = EMNIST("digits").load(tmp_path, EMNIST("digits").index(tmp_path))
    np.testing.assert_array_equal(image, ell())
    assert image[10, 6] == 255 and image[23, 15] == 255 and image[10, 15] == 0


def test_letters_labels_1_to_26_become_class_indices_0_to_25(tmp_path):
    mapping = "".join(f"{i + 1} {65 + i} {97 + i}\n" for i in range(26))
    write_split(tmp_path, "letters", np.zeros((3, 28, 28)), [1, 26, 12], mapping)
    reader = EMNIST("letters")
    assert [ref.label for ref in reader.index(tmp_path)] == [0, 25, 11]
    assert reader.facts.classes[:2] == ("Aa", "Bb") and reader.facts.classes[11] == "Ll"
    assert reader.facts.source_labels == tuple(range(1, 27))

    write_split(tmp_path, "letters", np.zeros((1, 28, 28)), [0], mapping)
    with pytest.raises(BadInputError, match="label 0 at row 0") as err:
        reader.index(tmp_path)
    assert err.value.expected == "one of 1..26"


def test_mapping_is_read_and_checked(tmp_path):
    assert read_mapping(_mapping(tmp_path, "1 65 97\n2 66 98\n")) == {1: "Aa", 2: "Bb"}
    write_split(tmp_path, "mnist", np.zeros((1, 28, 28)), [0], "0 48\n1 49\n")
    with pytest.raises(BadInputError, match="label 2 maps to None") as err:
        EMNIST("mnist").index(tmp_path)
    assert err.value.path.endswith("emnist-mnist-mapping.txt")
    (tmp_path / "emnist-mnist-mapping.txt").unlink()
    with pytest.raises(BadInputError, match="missing"):
        EMNIST("mnist").index(tmp_path)
    with pytest.raises(BadInputError, match="line 1"):
        read_mapping(_mapping(tmp_path, "zero 48\n"))


def _mapping(folder, text):
    path = folder / "mapping.txt"
    path.write_text(text)
    return path


def test_every_split_declares_its_classes():
    counts = {name: len(split.classes) for name, split in SPLITS.items()}
    assert counts == {
        "balanced": 47,
        "bymerge": 47,
        "byclass": 62,
        "letters": 26,
        "digits": 10,
        "mnist": 10,
    }
    with pytest.raises(ValueError, match="emnist split 'bogus'"):
        EMNIST("bogus")


def test_a_file_of_another_split_is_refused(tmp_path):
    mapping = "".join(f"{i} {48 + i}\n" for i in range(10))
    write_split(tmp_path, "digits", np.zeros((1, 28, 28)), [0], mapping)
    (tmp_path / "emnist-balanced-mapping.txt").write_text(
        "".join(f"{i} {ord(c)}\n" for i, c in enumerate(SPLITS["balanced"].classes))
    )
    with pytest.raises(BadInputError, match="another data set or split"):
        EMNIST("balanced").index(tmp_path / "emnist-digits-train-images-idx3-ubyte.gz")


def test_every_flipped_byte_of_the_mapping_is_caught_or_changes_nothing(tmp_path):
    """The mapping carries no checksum, but every line is checked against the classes declared
    for the split, so a flip is refused naming the file, or changes nothing read (a newline
    turned into another line break)."""
    mapping = "".join(f"{i} {48 + i}\n" for i in range(10)).encode()
    write_split(tmp_path, "digits", np.zeros((1, 28, 28)), [0], "")
    path = tmp_path / "emnist-digits-mapping.txt"
    unchanged = 0
    for at in range(len(mapping)):
        for mask in (0x01, 0x80, 0xFF):
            changed = bytearray(mapping)
            changed[at] ^= mask
            path.write_bytes(bytes(changed))
            try:
                index = EMNIST("digits").index(tmp_path)
            except BadInputError as err:
                assert err.path == str(path)
                continue
            assert [ref.label for ref in index] == [0]
            unchanged += 1
    assert unchanged == 10  # "\n" ^ 0x01 is "\v", which splitlines also breaks at


def test_a_bad_pair_is_skipped_but_a_bad_mapping_never(tmp_path):
    mapping = "".join(f"{i} {48 + i}\n" for i in range(10))
    write_split(tmp_path, "digits", np.zeros((2, 28, 28)), [3, 4], mapping)
    test_images = tmp_path / "emnist-digits-test-images-idx3-ubyte.gz"
    write_idx(test_images, np.zeros((1, 28, 28)))
    write_idx(tmp_path / "emnist-digits-test-labels-idx1-ubyte.gz", [5])
    test_images.write_bytes(test_images.read_bytes()[:-4])  # the trailer's length cut off
    with pytest.raises(BadInputError, match="broken gzip stream") as err:
        EMNIST("digits").index(tmp_path)
    assert err.value.path == str(test_images)
    index = EMNIST("digits").index(tmp_path, skip_bad=True)
    assert [(ref.label, ref.split) for ref in index] == [(3, "train"), (4, "train")]
    assert [s.path for s in index.skipped] == [str(test_images)]

    (tmp_path / "emnist-digits-mapping.txt").write_text(mapping.replace("9 57", "9 58"))
    with pytest.raises(BadInputError, match="label 9 maps to ':'"):
        EMNIST("digits").index(tmp_path, skip_bad=True)
