"""scikit-learn's handwritten digits (UCI optdigits), the embedded default that needs no files.

1,797 images of 8x8 pixels, ten classes, no split of its own. scikit-learn stores pixel values
0..16 (counts of set pixels in 4x4 blocks of a 32x32 bitmap); the reader scales them to 0..255 as
`round(v * 255 / 16)`, uint8, so that the reference's rate coding (p = pixel / (5.5 * 255) per
step, spec 2.1) applies unchanged; `DatasetFacts.note` records the scaling. The encoder reads the
payload row-major, `row * 8 + col`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import DatasetFacts, Index, SampleRef

SOURCE_MAX = 16  # scikit-learn's pixel values run 0..16
FACTS = DatasetFacts(
    name="digits",
    kind="image",
    classes=tuple("0123456789"),
    input_shape=(8, 8),
    note="scikit-learn's pixel values 0..16 scaled to 0..255 as round(v * 255 / 16)",
)


@cache
def images_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """All digits, `uint8 [1797, 8, 8]` scaled to 0..255, and their labels `[1797]`; loaded once
    per process (scikit-learn parses a compressed CSV)."""
    from sklearn.datasets import load_digits  # scikit-learn's import takes about a second

    data = load_digits()
    # Halves occur only at v = 8 (127.5): numpy and Python both round it to 128.
    images = np.rint(data.images * 255 / SOURCE_MAX).astype(np.uint8)
    return images, data.target.astype(np.int64)


@dataclass(frozen=True)
class Digits:
    """Reader of scikit-learn's digits; it has no options and reads no source."""

    facts: ClassVar[DatasetFacts] = FACTS

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per image, in scikit-learn's order; it reads no files, so skips none."""
        _no_source(source)
        _, labels = images_and_labels()
        refs = (SampleRef(f"digits#{i}", int(label), None, i) for i, label in enumerate(labels))
        return Index(tuple(refs))

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
        """The images of `refs`, `uint8 [8, 8]` in 0..255."""
        _no_source(source)
        images, _ = images_and_labels()
        return (images[int(ref.locator)].copy() for ref in refs)


def _no_source(source: Path | None) -> None:
    if source is not None:
        raise BadInputError(
            source, "a source was given", "none: digits is embedded in scikit-learn"
        )
