"""TI46 (Texas Instruments 46-word speaker-dependent isolated word corpus, LDC93S9): 16 speakers
(f1-f8, m1-m8) saying the TI-20 words or the 26 letters (TI-Alpha), 12.5 kHz NIST SPHERE.

Source: the corpus folder holding `ti_alpha/` and/or `ti20/`, or one of those folders, laid out as
LDC ships it, `<vocabulary>/<train|test>/<speaker>/<code><speaker><session>.<sph|wav>`; for example
`ti_alpha/train/f1/0af1set0.sph` is letter a (code `0a`) by speaker f1 in training session `set0`
(test sessions are `s1t0`..`s8t1`). Names are matched in any case (`TI_ALPHA/TRAIN/F1/0AF1SET0.SPH`
from a CD-ROM copy works). Where a recording is there both as `.wav` and `.sph`, the `.wav` is read:
it is what `sph2pipe` makes of a compressed SPHERE file.

The split is the source's own (`train`, `test`); `meta` keeps `speaker` and `session`, so that
speaker-dependent and speaker-independent splits can both be made. Payload: `AudioClip`, mono
float32 at the file's rate. Classes follow the word codes' order below; the audio encoder decides
the input channels (`input_shape` here is `(1,)`, one waveform).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import ascii_lowercase

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

# Word code (the file name's first two characters) -> word, in class order. TI-20: the digits
# zero..nine are 00-09, the ten command words 10-19 in the corpus documentation's order.
VOCABULARIES: dict[str, dict[str, str]] = {
    "ti_alpha": {f"0{letter}": letter for letter in ascii_lowercase},
    "ti20": {
        "00": "zero",
        "01": "one",
        "02": "two",
        "03": "three",
        "04": "four",
        "05": "five",
        "06": "six",
        "07": "seven",
        "08": "eight",
        "09": "nine",
        "10": "enter",
        "11": "erase",
        "12": "go",
        "13": "help",
        "14": "no",
        "15": "rubout",
        "16": "repeat",
        "17": "stop",
        "18": "start",
        "19": "yes",
    },
}
SPLITS = ("train", "test")
AUDIO_SUFFIXES = (".wav", ".sph")  # in order of preference for one recording
NAME = re.compile(r"(?P<code>[0-9a-z]{2})(?P<speaker>[fm][0-9]+)(?P<session>[a-z0-9]+)", re.I)


def _preferred_first(path: Path) -> tuple[Path, int]:
    """Sort key: by recording, and of one recording's files the preferred suffix first."""
    suffix = path.suffix.lower()
    return path.with_suffix(""), AUDIO_SUFFIXES.index(suffix) if suffix in AUDIO_SUFFIXES else 0


@dataclass(frozen=True)
class TI46:
    """Reader of one TI46 vocabulary, `ti_alpha` (the paper's TI46-Alpha) or `ti20`."""

    vocabulary: str = "ti_alpha"

    def __post_init__(self) -> None:
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(
                f"ti46 vocabulary {self.vocabulary!r}: expected one of {sorted(VOCABULARIES)}"
            )

    @property
    def facts(self) -> DatasetFacts:
        words = tuple(VOCABULARIES[self.vocabulary].values())
        return DatasetFacts(
            name=f"ti46-{self.vocabulary}", kind="audio", classes=words, input_shape=(1,)
        )

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per recording, in path order. Reads no audio (`load` checks it). Under
        `skip_bad` a recording outside the layout is listed as skipped."""
        folder = self._folder(require_source(source, self._expected))
        recordings: dict[Path, Path] = {}
        for path in sorted(folder.rglob("*"), key=_preferred_first):
            if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
                recordings.setdefault(path.with_suffix(""), path)
        if not recordings:
            raise BadInputError(folder, "no .sph or .wav recordings", self._expected)
        return index_each(
            recordings.values(),
            lambda path: [self._ref(path, folder)],
            skip_bad,
            lambda path: (path.relative_to(folder.parent).as_posix(),),
        )

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[AudioClip]:
        """The recordings of `refs`, mono float32 at their own rate."""
        root = self._folder(require_source(source, self._expected)).parent
        return (read_audio(root / str(ref.locator)) for ref in refs)

    @property
    def _expected(self) -> str:
        return f"a TI46 folder holding {self.vocabulary}/<train|test>/<speaker>/*.sph"

    def _folder(self, source: Path) -> Path:
        """The vocabulary folder: the source itself, or its child of that name in any case."""
        if source.name.lower() == self.vocabulary and source.is_dir():
            return source
        if source.is_dir():
            for child in source.iterdir():
                if child.name.lower() == self.vocabulary and child.is_dir():
                    return child
        raise BadInputError(source, f"no {self.vocabulary}/ folder", self._expected)

    def _ref(self, path: Path, folder: Path) -> SampleRef:
        """The ref of a recording at `folder/<split>/<speaker>/<name>`, its name parsed."""
        relative = path.relative_to(folder)
        match = NAME.fullmatch(path.stem)
        words = VOCABULARIES[self.vocabulary]
        if len(relative.parts) != 3 or relative.parts[0].lower() not in SPLITS:
            raise BadInputError(path, f"at {relative.as_posix()}", "<train|test>/<speaker>/<file>")
        split, speaker_folder = relative.parts[0].lower(), relative.parts[1].lower()
        if match is None or match["code"].lower() not in words:
            raise BadInputError(
                path,
                f"name {path.name!r}",
                f"<code><speaker><session> with a code of {self.vocabulary}",
            )
        if match["speaker"].lower() != speaker_folder:
            raise BadInputError(
                path,
                f"speaker {match['speaker']!r} in the name",
                f"{speaker_folder!r} as its folder",
            )
        locator = path.relative_to(folder.parent).as_posix()
        return SampleRef(
            sample_id=locator,
            label=list(words).index(match["code"].lower()),
            split=split,
            locator=locator,
            meta={"speaker": speaker_folder, "session": match["session"].lower()},
        )
