"""MNIST (Y. LeCun, C. Cortes, C. Burges) from its IDX files, gzipped or plain.

Source: a folder holding the standard files (`train-images-idx3-ubyte[.gz]`,
`train-labels-idx1-ubyte[.gz]`, `t10k-...`), or any pair named the same way (for example
`mnist-t10k-first8000-images-idx3-ubyte.gz` with its labels), given as the folder or as either file.
The split is the source's own (`train`, or `test` for `t10k`). Payload: `uint8 [28, 28]`, upright,
0 = background; the encoder reads it row-major (`row * 28 + col`, spec 2.1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from hm2bp.pipelines import idx
from hm2bp.pipelines.source import DatasetFacts, Index, SampleRef, require_source

FACTS = DatasetFacts(
    name="mnist",
    kind="image",
    classes=tuple("0123456789"),
    input_shape=(28, 28),
)
EXPECTED = "a folder of MNIST IDX files, or one file of an images/labels pair"


@dataclass(frozen=True)
class MNIST:
    """Reader of MNIST IDX files; it has no options."""

    facts: ClassVar[DatasetFacts] = FACTS

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per image, files in name order, labels 0..9; every file verified whole
        (`idx.verify`), a bad pair skipped and listed under `skip_bad`."""
        source = require_source(source, EXPECTED)
        images = idx.find_images(source)
        return idx.index_pairs(source, images, range(10), FACTS.input_shape, skip_bad)

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
        """The images of `refs`, `uint8 [28, 28]`."""
        return idx.load_images(require_source(source, EXPECTED), refs)
