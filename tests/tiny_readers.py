"""Small in-memory readers that follow the reader contract, for testing the conversion machinery
without real files. They live in an importable module (`hm2bp.tests.tiny_readers`) because Ray
workers unpickle them by reference."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import DatasetFacts, Index, SampleRef


def tiny_image(i: int, shape: tuple[int, int] = (6, 5)) -> np.ndarray:
    """A deterministic image per index, with some black pixels."""
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    image[rng.random(shape) < 0.3] = 0
    return image


@dataclass(frozen=True)
class TinyImages:
    """`n` images of 6 x 5 pixels, labels `i % 3`, speaker metadata `s{i % 4}`; the ids in
    `bad` raise `BadInputError` naming `<id>.img`; the ids in `flaky` raise `RuntimeError` once,
    as long as the file `flaky_marker` does not exist yet (the first run creates it)."""

    n: int = 20
    bad: tuple[str, ...] = ()
    flaky: tuple[str, ...] = ()
    flaky_marker: str = ""
    source_splits: bool = False
    facts: DatasetFacts = field(
        default=DatasetFacts("tiny", "image", ("zero", "one", "two"), (6, 5))
    )

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        refs = [
            SampleRef(
                f"img{i:03d}",
                i % 3,
                ("train" if i % 5 else "test") if self.source_splits else None,
                i,
                {"speaker": f"s{i % 4}"},
            )
            for i in range(self.n)
        ]
        return Index(tuple(refs))

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
        for ref in refs:
            if ref.sample_id in self.bad:
                raise BadInputError(f"{ref.sample_id}.img", "truncated payload", "30 bytes")
            if ref.sample_id in self.flaky and not Path(self.flaky_marker).exists():
                Path(self.flaky_marker).touch()
                raise RuntimeError(f"injected fault at {ref.sample_id}")
            yield tiny_image(int(ref.locator))


@dataclass(frozen=True)
class Subset:
    """Every `step`-th sample of a real reader's index: a fixed subset that converts in seconds."""

    reader: Any
    step: int

    @property
    def facts(self) -> DatasetFacts:
        return self.reader.facts

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        index = self.reader.index(source, skip_bad)
        return Index(index.refs[:: self.step], index.skipped)

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator:
        return self.reader.load(source, refs)
