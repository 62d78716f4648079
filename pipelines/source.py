"""What every reader provides, so that a conversion can fan out over Ray tasks.

A reader is split in two on purpose: `index` is cheap and runs once on the driver (sample ids,
labels, the source's own split, per-row metadata such as the speaker), so that splits and shard
boundaries are decided before any payload is read; `load` reads the payload of one slice of the
index inside a Ray task. Facts that are constant for the data set are declared once, as data
(`DatasetFacts`), and flow into the manifest.

Bad files are met in both halves: `index` refuses what it reads (a header, a file name, a gzip
stream it checks once so that no task has to), `load` what only the payload shows. Under
`skip_bad` each half leaves a bad file out and lists it (`Index.skipped` here, the tasks' own list
in `convert_task.py`); without it the first bad file raises `BadInputError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, overload, runtime_checkable

import numpy as np
from hm2bp.pipelines.errors import BadInputError
from tqdm.auto import tqdm

if TYPE_CHECKING:  # at run time imported where used: manifest -> encoders -> this module
    from hm2bp.pipelines.manifest import SkippedFile

Kind = Literal["image", "events", "audio"]
Unit = TypeVar("Unit")


@dataclass(frozen=True)
class DatasetFacts:
    """Constants of a data set, recorded in the manifest.

    `input_shape` is what one sample's spikes index into: `(H, W)` or `(C, H, W)` for images,
    `(2, 34, 34)` for N-MNIST (polarity, x, y), `(channels,)` for audio (a reader says `(1,)`, one
    mono waveform; the audio encoder's filterbank decides the channels).

    `source_labels` is the source's own label of each class index where the two differ (EMNIST
    Letters labels its 26 classes 1..26; class index `i` is source label `source_labels[i]`);
    empty means they are the same. `note` records, in words, anything the reader did to the values
    that a reader of the manifest must know (a rescaling, a stabilisation); empty when nothing.
    """

    name: str
    kind: Kind
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    source_labels: tuple[int, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class SampleRef:
    """One sample as the index knows it, before its payload is read.

    `sample_id` is stable across runs (a path relative to the source root, or `<file>#<row>`);
    `split` is the source's own split (`train`/`test`) where it has one, else None; `locator` is
    what `load` needs to find the payload (a relative path, or a row number); `meta` is per-row
    metadata kept as shard columns (for example `{"speaker": "theo"}`).
    """

    sample_id: str
    label: int
    split: str | None
    locator: str | int
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Index(Sequence[SampleRef]):
    """What `Reader.index` found: `refs` in the source's own order, and the files it left out
    under `skip_bad`, each with the reader's reason and the id of the sample it would have given
    where the index can name it (a recording); empty where it cannot (an IDX pair or a zip of
    many samples, a file whose place gives no label).

    It reads as the sequence of its refs (a slice is a tuple of refs), because that is all that
    splits, the shard planner and `load` need; only the conversion looks at `skipped`.
    """

    refs: tuple[SampleRef, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()

    @overload
    def __getitem__(self, i: int) -> SampleRef: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[SampleRef, ...]: ...
    def __getitem__(self, i: int | slice) -> SampleRef | tuple[SampleRef, ...]:
        return self.refs[i]

    def __len__(self) -> int:
        return len(self.refs)

    def __iter__(self) -> Iterator[SampleRef]:
        return iter(self.refs)


def index_each(
    units: Iterable[Unit],
    refs_of: Callable[[Unit], Sequence[SampleRef]],
    skip_bad: bool,
    ids_of: Callable[[Unit], Sequence[str]] = lambda unit: (),
) -> Index:
    """The refs of every unit (a file, a pair of files, a zip), in order, with a progress bar on
    a terminal.

    A unit whose `refs_of` raises `BadInputError` stops the index, unless `skip_bad`: then it is
    listed as skipped with `ids_of(unit)`, and its refs are all left out (`refs_of` adds a unit's
    refs only when it returns). A unit that is itself an `Index` (a zip whose bad members were
    skipped) passes its skipped files on.
    """
    refs: list[SampleRef] = []
    skipped: list[SkippedFile] = []
    # A bar on a terminal only (disable=None): checking thousands of headers takes a while.
    for unit in tqdm(units, desc="index", unit="file", leave=False, disable=None):
        try:
            found = refs_of(unit)
        except BadInputError as err:
            if not skip_bad:
                raise
            skipped.append(skipped_file(err, ids_of(unit)))
            continue
        refs += found
        if isinstance(found, Index):
            skipped += found.skipped
    return Index(tuple(refs), tuple(skipped))


def skipped_file(err: BadInputError, sample_ids: Sequence[str] = ()) -> SkippedFile:
    """The manifest's record of a file left out for `err`, its reason worded as the error's."""
    from hm2bp.pipelines.manifest import SkippedFile

    return SkippedFile(err.path, f"{err.problem} (expected {err.expected})", tuple(sample_ids))


@dataclass(frozen=True)
class AudioClip:
    """A mono recording as read from disk, before resampling: `samples` float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int


Payload = np.ndarray | AudioClip


@runtime_checkable
class Reader(Protocol):
    """One data set's reader: the real on-disk format and nothing else."""

    facts: DatasetFacts

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """All samples of `source` in the source's own order, reading no payload beyond what
        the format's checks need. Raises `BadInputError` naming the file on one it cannot use
        (a wrong magic, a size mismatch, a broken gzip stream, a name outside the layout);
        under `skip_bad` lists that file in `Index.skipped` instead and goes on. A source that
        is unusable as a whole (missing, no files of the format) raises either way."""
        ...

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[Payload]:
        """The payload of each ref, in order: an image `uint8 [H, W]` (upright), events as a
        structured array with fields `x, y, p, t` (t in microseconds), or an `AudioClip`.
        Raises `BadInputError` naming the file on a bad payload."""
        ...


def require_source(source: Path | None, expected: str) -> Path:
    """`source` as a Path; a reader of files refuses None (only the embedded digits need none)."""
    if source is None:
        raise BadInputError("<no source>", "no source given", expected)
    return Path(source)
