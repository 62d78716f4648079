"""EMNIST (G. Cohen, S. Afshar, J. Tapson, A. van Schaik, 2017) from its IDX files, every split.

Source: the folder of EMNIST's `gzip` distribution (`emnist-<split>-{train,test}-{images-idx3,
labels-idx1}-ubyte[.gz]` beside `emnist-<split>-mapping.txt`), or one file of a pair in that folder.
The split option picks the files; the source's own train/test split is kept.

EMNIST stores each image transposed (column-major, a legacy of its MATLAB conversion); the payload
is transposed back, `uint8 [28, 28]` upright, so that the encoder's row-major index
(`row * 28 + col`) means the same as for MNIST.

Labels. The mapping file lists, per line, a label and the ASCII code(s) of its character(s); it is
read and checked against the classes declared below, so that a class index always means the same
character. Class indices are 0-based and follow the mapping's order. For every split but Letters
the index equals EMNIST's label; Letters labels its 26 classes 1..26 (upper and lower case merged,
"Aa".."Zz"), so its index is the label minus one, which `DatasetFacts.source_labels` records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import ascii_lowercase, ascii_uppercase, digits

import numpy as np
from hm2bp.pipelines import idx
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import DatasetFacts, Index, SampleRef, require_source


@dataclass(frozen=True)
class Split:
    """One EMNIST split: its class names in label order, and the label of the first class."""

    classes: tuple[str, ...]
    first_label: int = 0

    @property
    def source_labels(self) -> tuple[int, ...]:
        return tuple(range(self.first_label, self.first_label + len(self.classes)))


# Balanced and ByMerge merge the 15 lower-case letters that look like their capitals into them.
_MERGED = tuple(digits + ascii_uppercase + "abdefghnqrt")
SPLITS = {
    "balanced": Split(_MERGED),
    "bymerge": Split(_MERGED),
    "byclass": Split(tuple(digits + ascii_uppercase + ascii_lowercase)),
    "letters": Split(
        tuple(u + lo for u, lo in zip(ascii_uppercase, ascii_lowercase, strict=True)), 1
    ),
    "digits": Split(tuple(digits)),
    "mnist": Split(tuple(digits)),
}
IMAGE_SHAPE = (28, 28)


def read_mapping(path: Path) -> dict[int, str]:
    """`emnist-<split>-mapping.txt`: label -> its character(s), e.g. `1 65 97` -> `{1: "Aa"}`."""
    if not path.exists():
        raise BadInputError(path, "missing", "the split's mapping file beside its IDX files")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        raise BadInputError(path, f"a byte that is not ASCII ({err})", "ASCII text") from err
    mapping = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        codes_ok = all(f.isdigit() for f in fields) and all(int(f) < 128 for f in fields[1:])
        if len(fields) < 2 or not codes_ok:
            raise BadInputError(path, f"line {number} is {line!r}", "'<label> <ascii code>...'")
        if int(fields[0]) in mapping:
            raise BadInputError(path, f"label {fields[0]} again on line {number}", "one per label")
        mapping[int(fields[0])] = "".join(chr(int(code)) for code in fields[1:])
    return mapping


def _check_mapping(path: Path, declared: dict[int, str]) -> None:
    found = read_mapping(path)
    for label in sorted(found.keys() | declared.keys()):
        if found.get(label) != declared.get(label):
            raise BadInputError(
                path, f"label {label} maps to {found.get(label)!r}", f"{declared.get(label)!r}"
            )


@dataclass(frozen=True)
class EMNIST:
    """Reader of one EMNIST split; `split` is one of `SPLITS`."""

    split: str = "balanced"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"emnist split {self.split!r}: expected one of {sorted(SPLITS)}")

    @property
    def facts(self) -> DatasetFacts:
        split = SPLITS[self.split]
        return DatasetFacts(
            name=f"emnist-{self.split}",
            kind="image",
            classes=split.classes,
            input_shape=IMAGE_SHAPE,
            source_labels=split.source_labels if split.first_label else (),
        )

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per image, files in name order, after checking the mapping file; every IDX
        file verified whole (`idx.verify`), a bad pair skipped and listed under `skip_bad`.
        A bad mapping raises even then: it gives every file's labels their meaning."""
        source = require_source(source, f"the folder of emnist-{self.split}-* files")
        split = SPLITS[self.split]
        mapping_path = idx.root_of(source) / f"emnist-{self.split}-mapping.txt"
        _check_mapping(mapping_path, dict(zip(split.source_labels, split.classes, strict=True)))
        images = idx.find_images(source, prefix=f"emnist-{self.split}-")
        return idx.index_pairs(source, images, split.source_labels, IMAGE_SHAPE, skip_bad)

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
        """The images of `refs`, transposed to upright, `uint8 [28, 28]`."""
        source = require_source(source, f"the folder of emnist-{self.split}-* files")
        return (np.ascontiguousarray(image.T) for image in idx.load_images(source, refs))
