"""N-MNIST (G. Orchard, A. Jayawant, G. Cohen, N. Thakor, 2015): MNIST digits seen by an ATIS event
camera making three saccades, as 5-byte events in `.bin` files.

Source: a folder holding `Train/<digit>/*.bin` and `Test/<digit>/*.bin` (folder names in any case),
or the official `train.zip`/`test.zip` in that folder, or one of those zips itself; zips are read
in place, never extracted. Where a split is there both unpacked and zipped (tonic's layout keeps
both), the folder is read. The label is the digit folder; the split is `Train`/`Test`. Sample ids
are `Train/<digit>/<file>.bin` whichever container a sample came from.

Payload: a structured array `EVENTS_DTYPE` (x, y in pixels 0..33, p = 1 for ON, t in us), in file
order. An empty `.bin` is a valid sample with zero events; the encoder then emits no spikes. The
encoder indexes inputs as `p * 1156 + x * 34 + y` (the reference's layout, spec 2.3).

Decoding uses tonic's `read_mnist_file`, which follows the reference's `Read_Ndataset.m` to the
letter, including its overflow records (`y == 240` adds 2**13 us to later events; N-MNIST's
~300 ms recordings never need one, so real files have none).

Stabilisation (option `stabilize`, applied in `load`, so the encoder receives stabilised events
and the manifest's note says so) is `stabilize` below, a pure function.

What is checked. A `.bin` carries no checksum; `decode` refuses what the format rules out: a
length that is not whole events, x or y outside the 34x34 sensor, timestamps out of time order (the
camera emits events in order; so does every file of the real data). A flipped bit that breaks none
of these (the polarity, a low bit of x or y, a timestamp bit that keeps the order) or a cut at an
event boundary cannot be detected. A zip checks each member's CRC-32 as it is read (`load`);
`index` checks the directory itself: as many entries as its end record declares, and the local
header of every entry it does not read agreeing with its name, since a corrupt name would
otherwise drop a sample from the index unseen.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import DatasetFacts, Index, SampleRef, index_each, require_source

EVENTS_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
SENSOR_SIZE = (34, 34)  # x, y pixels
BYTES_PER_EVENT = 5
# tonic's reader fills the fields by position, in this order.
_TONIC_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
SPLITS = {"train": "Train", "test": "Test"}  # split -> folder name in ids and official zips
# What zipfile raises on a damaged archive or member besides BadZipFile: a truncated member
# (EOFError), a corrupt deflate stream (zlib.error), a flipped method, version or flag bit
# (NotImplementedError, or RuntimeError for the encryption flag).
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError)
_END_OF_DIRECTORY = b"PK\x05\x06"  # the end record: entry count at byte 10 (2 bytes)
_ZIP64_COUNT_FULL = 0xFFFF  # then the count is in the zip64 end record, found by its locator
EXPECTED = "a folder with Train/<digit>/*.bin, Test/<digit>/*.bin or train.zip/test.zip, or a zip"

# The saccades as the reference's `stabilize.m` removes them: three straight moves of 105 ms,
# (+3.5, +7) px, then (+3.5, -7) px, then (-7, 0) px, back to the start.
SACCADE_US = 105e3
SACCADE_X_PX = 3.5
SACCADE_Y_PX = 7.0

FACTS = DatasetFacts(
    name="nmnist", kind="events", classes=tuple("0123456789"), input_shape=(2, *SENSOR_SIZE)
)
STABILIZED_NOTE = (
    "saccade motion removed as the reference's stabilize.m (spec 2.3): positions rounded, "
    "events that leave the 34x34 grid dropped"
)


def stabilize(events: np.ndarray) -> np.ndarray:
    """Events with the camera's saccade motion subtracted, as the reference does (spec 2.3).

    A port of `stabilize.m` from the N-MNIST site, in its own 1-based pixels and operation order:
    subtract the piecewise-linear motion at each event's time, round half away from zero (MATLAB's
    `round`), drop positions outside 1..34, return to 0-based. Events after 315 ms continue the
    third move, as there. Unlike tonic's port (`tonic.datasets.nmnist.stabilize`), it adds no
    hand-tuned (4, 2) px offset, so the result matches the reference's input spikes.
    """
    t = events["t"].astype(np.float64)
    x = events["x"] + 1.0
    y = events["y"] + 1.0
    moves = [t <= SACCADE_US, t <= 2 * SACCADE_US]  # np.select takes the first that holds
    sx = np.select(
        moves,
        [
            x - SACCADE_X_PX * t / SACCADE_US,
            x - SACCADE_X_PX - SACCADE_X_PX * (t - SACCADE_US) / SACCADE_US,
        ],
        x - 2 * SACCADE_X_PX + 2 * SACCADE_X_PX * (t - 2 * SACCADE_US) / SACCADE_US,
    )
    sy = np.select(
        moves,
        [
            y - SACCADE_Y_PX * t / SACCADE_US,
            y - SACCADE_Y_PX + SACCADE_Y_PX * (t - SACCADE_US) / SACCADE_US,
        ],
        y,
    )
    # For v >= 0, floor(v + 0.5) is MATLAB's round; negative v land below 1 either way.
    rx, ry = np.floor(sx + 0.5), np.floor(sy + 0.5)
    keep = (rx >= 1) & (rx <= SENSOR_SIZE[0]) & (ry >= 1) & (ry <= SENSOR_SIZE[1])
    out = events[keep].copy()
    out["x"] = rx[keep] - 1
    out["y"] = ry[keep] - 1
    return out


def decode(data: bytes, path: str) -> np.ndarray:
    """The events of one `.bin` file's bytes (`path` names it in errors), `EVENTS_DTYPE [n]`."""
    # tonic imports torch (about a second); only the tasks that decode pay for it.
    from tonic.io import read_mnist_file

    if len(data) % BYTES_PER_EVENT:
        raise BadInputError(path, f"{len(data)} bytes", "a multiple of 5 (5 bytes per event)")
    raw = read_mnist_file(io.BytesIO(data), dtype=_TONIC_DTYPE, is_stream=True)
    outside = (raw["x"] >= SENSOR_SIZE[0]) | (raw["y"] >= SENSOR_SIZE[1])
    if outside.any():
        at = np.flatnonzero(outside)[0]
        raise BadInputError(
            path, f"event {at} at x={raw['x'][at]}, y={raw['y'][at]}", "x, y below 34 (N-MNIST)"
        )
    backwards = np.flatnonzero(np.diff(raw["t"]) < 0)
    if backwards.size:
        at = backwards[0] + 1
        raise BadInputError(
            path,
            f"event {at} at t={raw['t'][at]} us after t={raw['t'][at - 1]} us",
            "timestamps in time order",
        )
    events = np.empty(len(raw), EVENTS_DTYPE)
    for name in EVENTS_DTYPE.names:
        events[name] = raw[name]
    return events


@dataclass(frozen=True)
class NMNIST:
    """Reader of N-MNIST `.bin` files; `stabilize` removes the saccade motion (spec 2.3)."""

    stabilize: bool = False

    @property
    def facts(self) -> DatasetFacts:
        return replace(FACTS, note=STABILIZED_NOTE) if self.stabilize else FACTS

    def index(self, source: Path | None, skip_bad: bool = False) -> Index:
        """One ref per `.bin` file, Train before Test, files in name order. Reads no payload,
        only zip directories. Under `skip_bad` a file outside the layout, or a zip that fails
        its directory checks, is listed as skipped."""
        source = require_source(source, EXPECTED)
        if source.is_file():
            return _index_zip(source, source.parent, skip_bad)
        if not source.is_dir():
            raise BadInputError(source, "no such file or folder", EXPECTED)
        children = {child.name.lower(): child for child in source.iterdir()}
        parts = []
        for split in SPLITS:
            if split in children and children[split].is_dir():
                parts.append(partial(_index_folder, children[split], source, split, skip_bad))
            elif f"{split}.zip" in children:
                parts.append(partial(_index_zip, children[f"{split}.zip"], source, skip_bad))
        index = index_each(parts, lambda part: part(), skip_bad)
        if not index.refs and not index.skipped:
            raise BadInputError(source, "no N-MNIST .bin files", EXPECTED)
        return index

    def load(self, source: Path | None, refs: Sequence[SampleRef]) -> Iterator[np.ndarray]:
        """The events of `refs`, stabilised if the option says so."""
        source = require_source(source, EXPECTED)
        root = source.parent if source.is_file() else source
        archives: dict[str, zipfile.ZipFile] = {}
        try:
            for ref in refs:
                container, _, member = str(ref.locator).partition("#")
                if member:
                    if container not in archives:
                        archives[container] = _open_zip(root / container)
                    data = _read_member(archives[container], member, root / container)
                    name = f"{root / container}#{member}"
                else:
                    data, name = (root / container).read_bytes(), str(root / container)
                events = decode(data, name)
                yield stabilize(events) if self.stabilize else events
        finally:
            for archive in archives.values():
                archive.close()


def _is_sample(path: PurePosixPath) -> bool:
    """A `.bin` file, not macOS metadata (`__MACOSX/`, `._name`) that copies and zips carry."""
    return (
        path.suffix.lower() == ".bin"
        and not path.name.startswith("._")
        and "__MACOSX" not in path.parts
    )


def _ref(path: PurePosixPath, split: str | None, locator: str, where: str) -> SampleRef:
    """The ref of a sample at `path` (`[<Split>/]<digit>/<name>.bin`)."""
    digit = path.parent.name
    if not re.fullmatch(r"[0-9]", digit):
        raise BadInputError(where, f"a .bin file in folder {digit!r}", "a digit folder 0-9")
    if len(path.parts) >= 3 and path.parts[-3].lower() in SPLITS:
        split = path.parts[-3].lower()
    sample_id = f"{SPLITS[split]}/{digit}/{path.name}" if split else locator
    return SampleRef(sample_id, int(digit), split, locator)


def _index_folder(folder: Path, root: Path, split: str, skip_bad: bool) -> Index:
    relative = {
        path: PurePosixPath(path.relative_to(root).as_posix()) for path in folder.rglob("*")
    }
    samples = sorted(path for path, name in relative.items() if path.is_file() and _is_sample(name))
    return index_each(
        samples,
        lambda path: [_ref(relative[path], split, str(relative[path]), str(path))],
        skip_bad,
    )


def _split_of_zip(path: Path) -> str | None:
    tokens = re.split(r"[-_.]", path.name.lower())
    return next((split for split in SPLITS if split in tokens), None)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as err:
        raise BadInputError(path, f"unreadable zip ({err})", "a zip archive of .bin files") from err


def _read_member(archive: zipfile.ZipFile, member: str, path: Path) -> bytes:
    """A member's bytes, its CRC-32 checked by zipfile on the way."""
    try:
        return archive.read(member)
    except (*_ZIP_ERRORS, KeyError) as err:
        raise BadInputError(
            f"{path}#{member}", f"unreadable member ({type(err).__name__}: {err})", "an intact zip"
        ) from err


def _declared_entries(path: Path) -> int:
    """The number of entries the zip's end record declares (APPNOTE 4.3.16), or its zip64 end
    record's (4.3.14, located by 4.3.15) where the classic count is full."""
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        start = max(size - 22 - 0xFFFF, 0)  # the end record, then a comment of up to 64 KiB
        f.seek(start)
        tail = f.read()
        end = len(tail) - 22  # where it is without a comment; else searched for, as zipfile does
        if tail[end : end + 4] != _END_OF_DIRECTORY or tail[-2:] != b"\0\0":
            end = tail.rfind(_END_OF_DIRECTORY)  # zipfile found it when it opened the archive
        count = int.from_bytes(tail[end + 10 : end + 12], "little")
        if count != _ZIP64_COUNT_FULL:
            return count
        f.seek(int.from_bytes(tail[end - 12 : end - 4], "little") + 32)  # the locator's offset
        return int.from_bytes(f.read(8), "little")


def _check_directory(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse a zip whose directory lost entries (a corrupt comment or name length swallows the
    entries after it), or an entry `index` does not read whose local header disagrees with its
    name (a corrupt name that turned a sample into something else)."""
    entries = archive.infolist()
    declared = _declared_entries(path)
    if len(entries) != declared:
        raise BadInputError(
            path, f"{len(entries)} entries in the central directory", f"{declared}, as it declares"
        )
    for info in entries:
        if not _is_sample(_safe_member(info.filename, path)):
            try:
                archive.open(info).close()  # reads the local header: zipfile compares the names
            except _ZIP_ERRORS as err:
                raise BadInputError(
                    f"{path}#{info.filename}", f"unreadable entry ({err})", "an intact zip"
                ) from err


def _safe_member(name: str, path: Path) -> PurePosixPath:
    """A zip member's name as a relative path; a name that could escape a folder (absolute, a
    drive, `..`, backslashes) refuses the whole archive, since only a crafted zip has one."""
    member = PurePosixPath(name)
    escapes = member.is_absolute() or ".." in member.parts or "\\" in name
    if escapes or ":" in member.parts[0]:
        raise BadInputError(
            path, f"member name {name!r}", "relative member names without '..' (path traversal)"
        )
    return member


def _index_zip(path: Path, root: Path, skip_bad: bool) -> Index:
    """The samples of one zip, after its directory checks (which refuse the whole zip); under
    `skip_bad` a member outside the layout is listed as skipped."""
    with _open_zip(path) as archive:
        _check_directory(archive, path)
        names = sorted(archive.namelist())
    split = _split_of_zip(path)
    container = path.relative_to(root).as_posix()

    def refs_of(name: str) -> list[SampleRef]:
        return [_ref(PurePosixPath(name), split, f"{container}#{name}", f"{path}#{name}")]

    samples = [name for name in names if _is_sample(PurePosixPath(name))]
    return index_each(samples, refs_of, skip_bad)
