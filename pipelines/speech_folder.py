"""A folder of WAV recordings whose file names carry the label, such as the Free Spoken Digit
Dataset (FSDD, Z. Jackson et al.), `recordings/<digit>_<speaker>_<take>.wav`.

Every `.wav` under the folder (any depth, suffix in any case) is a sample; its name must match
`pattern`, a regular expression with a named group `label` and, for speaker-independent splits,
`speaker`. Every other named group (FSDD's `take`) is kept in `meta` with `speaker`, so that splits
such as FSDD's usual "take < 5 is test" can be made downstream. The folder has no split of its own.

Classes are the labels found, sorted (numerically when all are integers), unless given: give them
when converting several folders, so that a class index means the same word in each
(`folder_classes` lists them). Payload: `AudioClip`, mono float32 at the file's rate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hm2bp.pipelines.audio import read_audio
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import (
    AudioClip,
    DatasetFacts,
    Index,
    SampleRef,
    index_each,
    require_source,
)

FSDD_PATTERN = r"(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<take>[0-9]+)\.(?i:wav)"
EXPECTED = "a folder of .wav files named by the pattern"


def _recordings(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise BadInputError(folder, "not a folder", EXPECTED)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
    if not paths:
        raise BadInputError(folder, "no .wav files", EXPECTED)
    return paths


def _fields(path: Path, pattern: re.Pattern[str]) -> dict[str, str]:
    match = pattern.fullmatch(path.name)
    if match is None:
        raise BadInputError(path, "name does not match the pattern", f"{pattern.pattern!r}")
    return {name: value for name, value in match.groupdict().items() if value is not None}


def _label_order(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def folder_classes(source: Path, pattern: str = FSDD_PATTERN) -> tuple[str, ...]:
    """The labels in the file names under `source`, sorted (integers by value, before words).
    A name that does not match `pattern` is passed over here: `SpeechFolder.index` refuses it,
    or lists it as skipped."""
    compiled = re.compile(pattern)
    matches = (compiled.fullmatch(path.name) for path in _recordings(Path(source)))
    labels = {match["label"] for match in matches if match and match["label"] is not None}
    if not labels:
        raise BadInputError(source, "no file name matches the pattern", f"{pattern!r}")
    return tuple(sorted(labels, key=_label_order))


@dataclass(frozen=True)
class SpeechFolder:
    """Reader of a folder of labelled WAV files; `classes` fixes the class indices (see
    `folder_classes`), `pattern` parses the file names."""

    classes: tuple[str, ...]
    pattern: str = FSDD_PATTERN

    def __post_init__(self) -> None:
        try:
            groups = re.compile(self.pattern).groupindex
        except re.error as err:
            raise ValueError(f"wav pattern {self.pattern!r}: {err}") from err
        if "label" not in groups:
            raise ValueError(f"wav pattern {self.pattern!r}: expected a named group 'label'")
        if not self.classes:
            raise ValueError("wav classes: expected at least one class")

    @property
    def facts(self) -> DatasetFacts:
        return DatasetFacts(name="wav", kind="audio", classes=self.classes, input_shape=(1,))

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per `.wav` file, in path order, labels by position in `classes`. Reads no
        audio (`load` checks it). Under `skip_bad` a file whose name does not match the pattern,
        or names another label, is listed as skipped."""
        folder = require_source(source, EXPECTED)
        pattern = re.compile(self.pattern)
        class_index = {name: i for i, name in enumerate(self.classes)}

        def refs_of(path: Path) -> list[SampleRef]:
            fields = _fields(path, pattern)
            label = fields.pop("label")
            if label not in class_index:
                raise BadInputError(path, f"label {label!r}", f"one of {list(self.classes)}")
            relative = path.relative_to(folder).as_posix()
            return [SampleRef(relative, class_index[label], None, relative, fields)]

        return index_each(
            _recordings(folder),
            refs_of,
            skip_bad,
            lambda path: (path.relative_to(folder).as_posix(),),
        )

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[AudioClip]:
        """The recordings of `refs`, mono float32 at their own rate."""
        folder = require_source(source, EXPECTED)
        return (read_audio(folder / str(ref.locator)) for ref in refs)
