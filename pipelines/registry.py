"""Readers by short name, so that configs and the CLI pick one with a word and its options.

Each reader is a frozen dataclass whose fields are its options (what the manifest records):

| name | reader | options |
| --- | --- | --- |
| `digits` | `digits.Digits` | none (reads no source) |
| `mnist` | `mnist.MNIST` | none |
| `emnist` | `emnist.EMNIST` | `split`: balanced, byclass, bymerge, letters, digits, mnist |
| `nmnist` | `nmnist.NMNIST` | `stabilize`: remove the saccade motion (spec 2.3) |
| `ti46` | `ti46.TI46` | `vocabulary`: ti_alpha or ti20 |
| `wav` | `speech_folder.SpeechFolder` | `pattern` (regex, FSDD's by default), `classes` |
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hm2bp.pipelines.digits import Digits
from hm2bp.pipelines.emnist import EMNIST
from hm2bp.pipelines.mnist import MNIST
from hm2bp.pipelines.nmnist import NMNIST
from hm2bp.pipelines.source import Reader
from hm2bp.pipelines.speech_folder import FSDD_PATTERN, SpeechFolder, folder_classes
from hm2bp.pipelines.ti46 import TI46

READERS: dict[str, type] = {
    "digits": Digits,
    "mnist": MNIST,
    "emnist": EMNIST,
    "nmnist": NMNIST,
    "ti46": TI46,
    "wav": SpeechFolder,
}


def reader_options(name: str) -> dict[str, Any]:
    """The options of reader `name` with their defaults (`dataclasses.MISSING` if required)."""
    return {f.name: f.default for f in dataclasses.fields(_reader_class(name))}


def get_reader(name: str, source: Path | None = None, **options: Any) -> Reader:
    """Reader `name` with `options`. `source` is needed only by `wav` without `classes`, whose
    classes are then the labels in the source's file names, sorted."""
    known = reader_options(name)
    unknown = sorted(options.keys() - known.keys())
    if unknown:
        raise ValueError(f"reader {name!r}: unknown option(s) {unknown}; options: {sorted(known)}")
    if name == "wav" and "classes" not in options:
        if source is None:
            raise ValueError("reader 'wav': give `classes` or the source to read them from")
        options["classes"] = folder_classes(Path(source), options.get("pattern", FSDD_PATTERN))
    return READERS[name](**options)


def _reader_class(name: str) -> type:
    if name not in READERS:
        raise ValueError(f"reader {name!r}: expected one of {sorted(READERS)}")
    return READERS[name]
