"""The IDX file format of MNIST and EMNIST, shared by both readers.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. MNIST and EMNIST use only unsigned
bytes: images carry magic 2051 (`[N, rows, cols]`), labels 2049 (`[N]`). Files come gzipped or
plain; we sniff the gzip magic (1f 8b) rather than trust the `.gz` suffix, because both variants
circulate under both names.

A source is a folder holding image/label pairs, or one file of a pair (its partner is found by
name). Pairs are recognised by the names every distribution uses, `...-images-idx3-ubyte[.gz]`
beside `...-labels-idx1-ubyte[.gz]`, and the split is read from the name (`train`; `t10k` or
`test`). Sample ids leave out `.gz`, so that a sample keeps its id after the files are unpacked.

What is checked. A gzip stream carries the CRC-32 and the length of its data, met only at its
end: `verify` decompresses each file to the end once, on the driver (`index_pairs`), counting the
bytes rather than trusting the trailer's ISIZE, so that a flipped byte stops the conversion before
any task runs. The tasks then read headers and rows only. Every file's payload size must be what
its dimensions promise. A plain file carries no checksum: a flipped value byte (a pixel, a label
still in range) cannot be detected.

A gzip stream cannot seek: `load_images` decompresses from the start of the file up to the last row
it needs. Slices of contiguous rows (what a shard is) cost one pass; for the large EMNIST splits,
unpacking the files once makes every task seek directly.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import BinaryIO

import numpy as np
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import Index, SampleRef, index_each

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions [N, rows, cols]
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension [N]
GZIP_MAGIC = b"\x1f\x8b"

IMAGES_TOKEN = "-images-idx3-ubyte"
LABELS_TOKEN = "-labels-idx1-ubyte"
# The split as the file name states it; MNIST calls its test set `t10k`.
SPLIT_TOKENS = {"train": "train", "t10k": "test", "test": "test"}


@dataclass(frozen=True)
class IdxHeader:
    """What the header of one IDX file promises: `shape` is `[N, ...]` in values (bytes)."""

    path: Path
    shape: tuple[int, ...]
    gzipped: bool

    @property
    def offset(self) -> int:
        """Bytes of header before the first value: magic plus one uint32 per dimension."""
        return 4 + 4 * len(self.shape)

    @property
    def item_size(self) -> int:
        """Bytes of one item (one image, one label)."""
        return prod(self.shape[1:])


@dataclass(frozen=True)
class IdxPair:
    """An images file and its labels file, with the split their names state (None if neither)."""

    images: Path
    labels: Path
    split: str | None


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _open(path: Path, gzipped: bool) -> BinaryIO:
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a broken gzip stream (truncated, corrupt, failing its CRC or length check) into an
    error that names the file; `gzip.BadGzipFile` is an `OSError`."""
    try:
        yield
    except (EOFError, OSError, zlib.error) as err:
        raise BadInputError(
            path, f"broken gzip stream ({err})", "a complete gzip file passing its CRC check"
        ) from err


def _gzip_length(path: Path) -> int:
    """Bytes of `path` decompressed, counted. Reading to the end makes `gzip` check every
    member's CRC-32 and length; the trailer's ISIZE alone is not trusted (it is only the length
    mod 2**32, and a corrupt file can carry a right one)."""
    total = 0
    with _reading(path), gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total


def _check_length(header: IdxHeader, found: int) -> None:
    """Refuse a payload that is not exactly the size the header's dimensions promise."""
    if found != header.offset + prod(header.shape):
        raise BadInputError(
            header.path,
            f"{found - header.offset} payload bytes",
            f"{prod(header.shape)} for shape {list(header.shape)} as its header says",
        )


def read_header(path: Path, magic: int) -> IdxHeader:
    """The header of `path`: its magic must be `magic`. Reads the header bytes only, so that a
    task can call it cheaply; `verify` checks the rest of the file."""
    gzipped = _is_gzip(path)
    ndim = magic & 0xFF
    with _reading(path), _open(path, gzipped) as f:
        head = f.read(4 + 4 * ndim)
    found = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise BadInputError(path, f"IDX magic {found}", f"{magic} (IDX {kind})")
    if len(head) != 4 + 4 * ndim:
        raise BadInputError(path, "file ends inside the header", f"{ndim} dimensions of 4 bytes")
    return IdxHeader(path, struct.unpack(f">{ndim}I", head[4:]), gzipped)


def verify(path: Path, magic: int) -> IdxHeader:
    """The header of `path`, and the whole file checked against it: the payload has exactly the
    size the dimensions promise, and a gzip stream is decompressed to its end, where its CRC-32
    and length are checked. Run once per file on the driver, before any task reads it."""
    header = read_header(path, magic)
    _check_length(header, _gzip_length(path) if header.gzipped else path.stat().st_size)
    return header


def read_labels(path: Path) -> np.ndarray:
    """All labels of an IDX labels file, `uint8 [N]`, the file verified as by `verify` in the
    same pass (reading a gzip stream to its end checks its CRC)."""
    header = read_header(path, LABELS_MAGIC)
    with _reading(path), _open(path, header.gzipped) as f:
        data = f.read()
    _check_length(header, len(data))
    return np.frombuffer(data, np.uint8, offset=header.offset)


def read_images(path: Path, rows: Sequence[int]) -> dict[int, np.ndarray]:
    """The images at `rows` of an IDX images file, `uint8 [rows, cols]` each, by row.

    Rows are read in ascending order, so that a gzip stream is decompressed once, and only up to
    the last row wanted: the file was verified when it was indexed. A stream that breaks on the
    way (changed since) still raises `BadInputError` naming the file.
    """
    header = read_header(path, IMAGES_MAGIC)
    images = {}
    with _reading(path), _open(path, header.gzipped) as f:
        for row in sorted(set(rows)):
            if not 0 <= row < header.shape[0]:
                raise BadInputError(path, f"row {row} requested", f"a row below {header.shape[0]}")
            f.seek(header.offset + row * header.item_size)
            data = f.read(header.item_size)
            if len(data) != header.item_size:
                raise BadInputError(path, f"file ends inside row {row}", f"{header.shape[0]} rows")
            # a copy: writable, and not a view of the read buffer
            images[row] = np.frombuffer(data, np.uint8).reshape(header.shape[1:]).copy()
    return images


def _partner(path: Path) -> Path:
    """The labels file beside an images file, or the other way round, plain or gzipped."""
    name = path.name.removesuffix(".gz")
    own, other = (
        (IMAGES_TOKEN, LABELS_TOKEN) if IMAGES_TOKEN in name else (LABELS_TOKEN, IMAGES_TOKEN)
    )
    stem = name.replace(own, other)
    for candidate in (path.with_name(stem), path.with_name(stem + ".gz")):
        if candidate.exists():
            return candidate
    raise BadInputError(path, f"no {stem}[.gz] beside it", "IDX images and labels side by side")


def _split_of(name: str) -> str | None:
    for token in re.split(r"[-_.]", name.lower()):
        if token in SPLIT_TOKENS:
            return SPLIT_TOKENS[token]
    return None


def root_of(source: Path) -> Path:
    """The folder that locators are relative to: the source folder, or the folder of a file."""
    source = Path(source)
    return source if source.is_dir() else source.parent


def pair_of(images: Path) -> IdxPair:
    """An images file with the labels file beside it and the split their name states."""
    return IdxPair(images, _partner(images), _split_of(images.name))


def find_images(source: Path, prefix: str = "") -> list[Path]:
    """The images files of `source` (a folder, or one file of a pair) whose names start with
    `prefix`, sorted by name; `pair_of` finds each one's labels. Where a folder holds a file both
    plain and gzipped, the plain one is read (it seeks)."""
    source = Path(source)
    if source.is_dir():
        by_stem: dict[str, Path] = {}
        for path in sorted(source.iterdir()):  # sorted: `x` before `x.gz`, so the plain one stays
            if path.name.startswith(prefix) and IMAGES_TOKEN in path.name:
                by_stem.setdefault(path.name.removesuffix(".gz"), path)
        images = list(by_stem.values())
        if not images:
            raise BadInputError(
                source, "no IDX images file", f"files named '{prefix}*{IMAGES_TOKEN}[.gz]'"
            )
    elif not source.exists():
        raise BadInputError(source, "no such file or folder", "an IDX folder or file")
    elif not source.name.startswith(prefix):
        raise BadInputError(source, "a file of another data set or split", f"'{prefix}*'")
    elif IMAGES_TOKEN in source.name:
        images = [source]
    elif LABELS_TOKEN in source.name:
        images = [_partner(source)]
    else:
        raise BadInputError(
            source, "not an IDX file name", f"a name with '{IMAGES_TOKEN}' or '{LABELS_TOKEN}'"
        )
    return images


def index_pairs(
    source: Path,
    images: Sequence[Path],
    source_labels: Sequence[int],
    image_shape: tuple[int, ...],
    skip_bad: bool = False,
) -> Index:
    """One ref per image of each images file and its labels file (`pair_of`), its label the
    position of the file's label in `source_labels`. Both files are verified whole (`verify`);
    the images must be `image_shape` (as stored). Under `skip_bad` a pair with a bad file is
    listed as skipped, by the bad file's path, and the other pairs indexed."""
    root = root_of(source)
    lookup = np.full(256, -1, np.int64)
    lookup[list(source_labels)] = np.arange(len(source_labels))

    def refs_of(path: Path) -> list[SampleRef]:
        pair = pair_of(path)
        labels = _pair_labels(pair, image_shape)
        index = lookup[labels]
        bad = np.flatnonzero(index < 0)
        if bad.size:
            raise BadInputError(
                pair.labels,
                f"label {labels[bad[0]]} at row {bad[0]}",
                f"one of {min(source_labels)}..{max(source_labels)}",
            )
        file = pair.images.relative_to(root).as_posix()
        sample = file.removesuffix(".gz")
        return [
            SampleRef(f"{sample}#{row}", int(label), pair.split, f"{file}#{row}")
            for row, label in enumerate(index)
        ]

    return index_each(images, refs_of, skip_bad)


def _pair_labels(pair: IdxPair, image_shape: tuple[int, ...]) -> np.ndarray:
    """The labels of a pair, `uint8 [N]`, after verifying both files and that they agree."""
    n_images, *shape = verify(pair.images, IMAGES_MAGIC).shape
    if tuple(shape) != image_shape:
        raise BadInputError(pair.images, f"images of {shape}", f"{list(image_shape)}")
    labels = read_labels(pair.labels)
    if len(labels) != n_images:
        raise BadInputError(
            pair.labels, f"{len(labels)} labels", f"{n_images}, one per image of {pair.images.name}"
        )
    return labels


def load_images(source: Path, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
    """The image of each ref (locator `<file>#<row>`), `uint8 [rows, cols]` as stored, in order.

    Each file is read once, its rows in ascending order, however the refs are ordered.
    """
    root = root_of(source)
    located = [(file, int(row)) for file, _, row in (ref.locator.rpartition("#") for ref in refs)]
    rows: dict[str, list[int]] = {}
    for file, row in located:
        rows.setdefault(file, []).append(row)
    images = {file: read_images(root / file, wanted) for file, wanted in rows.items()}
    for file, row in located:
        yield images[file][row]
