"""Which samples train, validate and test: named split specs, written into each shard's `split`.

A spec is text, so that the CLI, configs and the manifest share it:

- `ratio:0.8`: stratified by label and seeded; per class, 80 % train and the rest val.
- `range:train=0-5999,val=6000-7999`: by position in the source's own order, inclusive ranges;
  samples outside every range are left out.
- `group:speaker=theo` (or `group:speaker=theo,jackson`): samples whose metadata `speaker` is one
  of the values are val, the rest train (a speaker-independent split).
- `source`: the source's own train/test (N-MNIST, EMNIST, TI46 folders).

`ratio`, `range` and `group` ignore the source's own split. Without a spec, `default_split` takes
`source` where the source has at least two splits of its own, else `ratio:0.8`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hm2bp.pipelines.source import SampleRef

SPLITS = ("train", "val", "test")
Assignment = list[str | None]  # one split per ref, None = left out


@dataclass(frozen=True)
class RatioSplit:
    train_fraction: float

    @property
    def spec(self) -> str:
        return f"ratio:{self.train_fraction:g}"

    def assign(self, refs: Sequence[SampleRef], seed: int) -> Assignment:
        labels = np.array([ref.label for ref in refs], dtype=np.int64)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1175]))
        out: Assignment = ["val"] * len(refs)
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            for i in members[: round(self.train_fraction * len(members))]:
                out[i] = "train"
        return out


@dataclass(frozen=True)
class RangeSplit:
    ranges: tuple[tuple[str, int, int], ...]  # (split, first, last), inclusive

    @property
    def spec(self) -> str:
        return "range:" + ",".join(f"{name}={a}-{b}" for name, a, b in self.ranges)

    def assign(self, refs: Sequence[SampleRef], seed: int) -> Assignment:
        out: Assignment = [None] * len(refs)
        for name, first, last in self.ranges:
            if last >= len(refs):
                raise ValueError(
                    f"split {self.spec!r}: {name}={first}-{last} reaches past the source's "
                    f"{len(refs)} samples (expected positions 0-{len(refs) - 1})"
                )
            out[first : last + 1] = [name] * (last - first + 1)
        return out


@dataclass(frozen=True)
class GroupSplit:
    key: str
    values: tuple[str, ...]

    @property
    def spec(self) -> str:
        return f"group:{self.key}={','.join(self.values)}"

    def assign(self, refs: Sequence[SampleRef], seed: int) -> Assignment:
        missing = [ref.sample_id for ref in refs if self.key not in ref.meta]
        if missing:
            raise ValueError(
                f"split {self.spec!r}: sample {missing[0]!r} has no metadata {self.key!r} "
                f"(expected every sample to have it; it has {sorted(refs[0].meta) or 'none'})"
            )
        found = {ref.meta[self.key] for ref in refs}
        unknown = [value for value in self.values if value not in found]
        if unknown:
            raise ValueError(
                f"split {self.spec!r}: no sample has {self.key}={unknown[0]!r} "
                f"(expected one of {', '.join(sorted(found))})"
            )
        return ["val" if ref.meta[self.key] in self.values else "train" for ref in refs]


@dataclass(frozen=True)
class SourceSplit:
    @property
    def spec(self) -> str:
        return "source"

    def assign(self, refs: Sequence[SampleRef], seed: int) -> Assignment:
        for ref in refs:
            if ref.split not in SPLITS:
                raise ValueError(
                    f"split 'source': sample {ref.sample_id!r} has source split {ref.split!r} "
                    "(expected train, val or test; a source without its own split needs "
                    "ratio:, range: or group:)"
                )
        return [ref.split for ref in refs]


Split = RatioSplit | RangeSplit | GroupSplit | SourceSplit


def parse_split(spec: str) -> Split:
    """The split a spec names; a `ValueError` quoting the spec and the expected forms otherwise."""
    kind, _, body = spec.partition(":")
    try:
        if kind == "source" and not body:
            return SourceSplit()
        if kind == "ratio":
            fraction = float(body)
            if 0.0 < fraction < 1.0:
                return RatioSplit(fraction)
        if kind == "range":
            return RangeSplit(_parse_ranges(body))
        if kind == "group":
            key, _, values = body.partition("=")
            if key and values and all(values.split(",")):
                return GroupSplit(key, tuple(values.split(",")))
    except ValueError as err:
        raise ValueError(f"split {spec!r}: {err}") from None
    raise ValueError(
        f"split {spec!r}: not understood (expected 'ratio:0.8', "
        "'range:train=0-5999,val=6000-7999', 'group:speaker=theo' or 'source')"
    )


def _parse_ranges(body: str) -> tuple[tuple[str, int, int], ...]:
    ranges = []
    for part in body.split(","):
        name, _, bounds = part.partition("=")
        first, _, last = bounds.partition("-")
        if name not in SPLITS:
            raise ValueError(f"{part!r} names split {name!r} (expected train, val or test)")
        if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
            raise ValueError(f"{part!r} is not an inclusive range (expected e.g. train=0-5999)")
        ranges.append((name, int(first), int(last)))
    ordered = sorted(ranges, key=lambda r: r[1])
    for (a_name, _, a_last), (b_name, b_first, _) in zip(ordered, ordered[1:], strict=False):
        if b_first <= a_last:
            raise ValueError(f"ranges {a_name} and {b_name} overlap (expected disjoint ranges)")
    return tuple(ranges)


def default_split(refs: Sequence[SampleRef]) -> Split:
    """`source` where the source has two or more splits of its own, else `ratio:0.8`."""
    own = {ref.split for ref in refs}
    return SourceSplit() if None not in own and len(own) >= 2 else RatioSplit(0.8)
