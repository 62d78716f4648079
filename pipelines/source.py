"""What every reader provides, so that a conversion can fan out over Ray tasks.

A reader is split in two on purpose: `index` is cheap and runs once on the driver (sample ids,
labels, the source's own split, per-row metadata such as the speaker), so that splits and shard
boundaries are decided before any payload is read; `load` reads the payload of one slice of the
index inside a Ray task. Facts that are constant for the data set are declared once, as data
(`DatasetFacts`), and flow into the manifest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from hm2bp.pipelines.errors import BadInputError

Kind = Literal["image", "events", "audio"]


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
class AudioClip:
    """A mono recording as read from disk, before resampling: `samples` float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int


Payload = np.ndarray | AudioClip


@runtime_checkable
class Reader(Protocol):
    """One data set's reader: the real on-disk format and nothing else."""

    facts: DatasetFacts

    def index(self, source: Path | None) -> list[SampleRef]:
        """All samples of `source` in the source's own order. Raises `BadInputError` on a
        header it cannot read (wrong magic, size mismatch)."""
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
