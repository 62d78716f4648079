"""Reading one recording, WAV or NIST SPHERE, into an `AudioClip`; shared by the TI46 and speech
folder readers.

libsndfile (through soundfile) decodes the samples of both formats, SPHERE in either byte order.
It cannot decode SPHERE's embedded compression (shorten, wavpack; TIDIGITS, TIMIT and other LDC
discs ship it), and it silently reads fewer samples from a truncated file (WAV or SPHERE) and
extra ones from a padded SPHERE file, so we parse both headers ourselves first: to refuse
compressed files with the command that unpacks them, and to check every size the header states
against the file (RIFF size, chunk sizes, `sample_count`) and the fields that repeat each other
(a WAV's byte rate and block size). Then the decoded samples must be exactly what the header
promised, and a SPHERE `sample_checksum` (of 16-bit PCM), where the header carries one, must
match. Neither format checksums its samples otherwise: a flipped sample byte cannot be detected,
nor can a SPHERE `sample_rate` flipped into another rate in range (a WAV repeats its rate).

A recording shorter than one analysis window of the audio front end (`MIN_DURATION_S`) is refused:
it holds no word, and the encoder would turn it into a silent sample.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from hm2bp.pipelines.audio_coding import AudioCoding
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import AudioClip

SPHERE_MAGIC = b"NIST_1A\n"
# Codings libsndfile decodes from SPHERE, with the bytes per sample each allows; anything else is
# compressed or foreign.
SPHERE_CODINGS = {"pcm": (1, 2, 3, 4), "ulaw": (1,), "alaw": (1,)}
SPHERE_REQUIRED = ("sample_count", "sample_rate", "channel_count", "sample_n_bytes")
SPHERE_BLOCK = 1024  # a SPHERE header is a whole number of 1024-byte blocks
WAV_MAGIC = (b"RIFF", b"WAVE")
# WAVE format tags whose block size is channels x bytes per sample, so that the header's sizes can
# be checked: PCM, IEEE float, A-law, mu-law, and the extensible form of these.
WAV_TAGS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", 0xFFFE: "extensible"}
DECOMPRESS_HINT = (
    "uncompressed PCM; unpack it first with NIST's sph2pipe, e.g. `sph2pipe -f wav in.sph out.wav`"
)
# Rates the audio encoder resamples from. Below 4 kHz speech loses the formants the filterbank
# listens to; above 192 kHz is not speech recording.
SAMPLE_RATE_RANGE_HZ = (4_000, 192_000)
# One analysis window of the reference's audio front end (512 samples at 12.5 kHz, 41 ms).
MIN_DURATION_S = AudioCoding.n_fft / AudioCoding.sample_rate

_FIELD = re.compile(r"(\S+) -(i|r|s(\d+)) (.*)")


@dataclass(frozen=True)
class Layout:
    """What a header promises: `frames` samples per channel of `channels`, at `rate` Hz."""

    frames: int
    channels: int
    rate: float


def read_sphere_header(path: Path) -> dict[str, int | float | str]:
    """The fields of a NIST SPHERE header (`NIST_1A`, its size in bytes, then `name -type value`
    lines up to `end_head`), typed as declared: `-i` int, `-r` float, `-sN` string of N chars."""
    with open(path, "rb") as f:
        head = f.read(16)
        if not head.startswith(SPHERE_MAGIC) or not head[8:].strip().isdigit():
            raise BadInputError(path, "no SPHERE preamble", "'NIST_1A' and the header size")
        size = int(head[8:])
        f.seek(0)
        text = f.read(size).decode("latin-1")
    fields: dict[str, int | float | str] = {"header_size": size}
    for line in text.splitlines()[2:]:
        if line.strip() == "end_head":
            return fields
        match = _FIELD.fullmatch(line.rstrip("\r"))
        if match is None:  # comments (';') and blank lines
            continue
        name, kind, length, value = match.groups()
        try:
            fields[name] = int(value) if kind == "i" else float(value) if kind == "r" else value
        except ValueError as err:
            raise BadInputError(path, f"header line {line!r}", f"a value of type -{kind}") from err
        if length is not None:
            fields[name] = value[: int(length)]
    raise BadInputError(path, f"no end_head in the first {size} bytes", "a complete SPHERE header")


def check_rate(path: Path, rate: float) -> None:
    """Refuse a sample rate the encoder cannot resample from (0 in a broken header, say)."""
    low, high = SAMPLE_RATE_RANGE_HZ
    if not low <= rate <= high:
        raise BadInputError(path, f"sample rate {rate} Hz", f"{low}..{high} Hz")


def check_wav(path: Path) -> Layout:
    """The layout a RIFF/WAVE file's header promises, after checking it against the file: the
    RIFF size is the file's, every chunk fits in it, one `fmt ` chunk (a known format tag, a rate
    in range, byte rate and block size agreeing with channels and sample width), one `data` chunk
    of whole frames."""
    size = path.stat().st_size
    chunks: dict[bytes, list[tuple[int, bytes]]] = {b"fmt ": [], b"data": []}
    with open(path, "rb") as f:
        head = f.read(12)
        if (head[:4], head[8:12]) != WAV_MAGIC:
            raise BadInputError(path, f"header {head!r}", "'RIFF', its size, 'WAVE'")
        riff = int.from_bytes(head[4:8], "little")
        if riff + 8 != size:
            raise BadInputError(path, f"RIFF size {riff} + 8 bytes", f"{size}, the file's size")
        while chunk := f.read(8):
            kind, length, start = chunk[:4], int.from_bytes(chunk[4:], "little"), f.tell()
            if len(chunk) < 8 or start + length > size:
                raise BadInputError(
                    path, f"chunk {kind!r} of {length} bytes at byte {start}", "whole chunks"
                )
            if kind in chunks:
                chunks[kind].append((length, f.read(16)))
            f.seek(start + length + length % 2)  # chunks are padded to even sizes
    if [len(found) for found in chunks.values()] != [1, 1]:
        counts = " and ".join(f"{len(found)} {kind.decode()!r}" for kind, found in chunks.items())
        raise BadInputError(path, f"{counts} chunks", "one of each")
    ((fmt_length, fmt),), ((data_length, _),) = chunks.values()
    if fmt_length < 16:
        raise BadInputError(path, f"a fmt chunk of {fmt_length} bytes", "at least 16")
    tag, channels, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", fmt)
    if tag not in WAV_TAGS:
        raise BadInputError(path, f"format tag {tag:#x}", f"one of {sorted(WAV_TAGS.values())}")
    check_rate(path, rate)
    consistent = block == channels * math.ceil(bits / 8) and byte_rate == rate * block
    if channels < 1 or bits < 1 or not consistent:
        raise BadInputError(
            path,
            f"{channels} channels of {bits} bits in blocks of {block} bytes, {byte_rate} bytes/s",
            "blocks of channels x bytes per sample, and byte rate = sample rate x block",
        )
    if data_length % block:
        raise BadInputError(path, f"{data_length} bytes of samples", f"whole frames of {block}")
    return Layout(data_length // block, channels, rate)


def check_sphere(path: Path) -> Layout:
    """The layout a SPHERE header promises, after refusing what libsndfile would misread:
    a missing field, a compressed or unknown coding, a byte order that is neither, a header that
    is not whole blocks, a payload that is not exactly `sample_count` samples, a rate out of
    range."""
    header = read_sphere_header(path)
    missing = [name for name in SPHERE_REQUIRED if not isinstance(header.get(name), int | float)]
    if missing:
        raise BadInputError(path, f"no {', '.join(missing)} in the header", "a SPHERE header")
    check_rate(path, float(header["sample_rate"]))
    coding = str(header.get("sample_coding", "pcm"))
    if coding not in SPHERE_CODINGS:
        raise BadInputError(path, f"sample_coding {coding!r}", DECOMPRESS_HINT)
    width, channels = int(header["sample_n_bytes"]), int(header["channel_count"])
    # little- or big-endian ("01" or "10" for 2 bytes); one byte has no order, written "1" or "0"
    orders = {"".join(map(str, range(width))), "".join(map(str, reversed(range(width))))}
    orders = {"0", "1"} if width == 1 else orders
    order = str(header.get("sample_byte_format", "1" if width == 1 else ""))
    if width not in SPHERE_CODINGS[coding] or channels < 1 or order not in orders:
        raise BadInputError(
            path,
            f"{channels} channels of {width}-byte {coding} in byte order {order!r}",
            f"{SPHERE_CODINGS[coding]} bytes a sample, byte order {' or '.join(sorted(orders))}",
        )
    size, header_size = path.stat().st_size, int(header["header_size"])
    if header_size % SPHERE_BLOCK or header_size > size:
        raise BadInputError(
            path, f"header size {header_size}", f"a multiple of {SPHERE_BLOCK} within the file"
        )
    expected = int(header["sample_count"]) * channels * width
    if size - header_size != expected:
        raise BadInputError(
            path,
            f"{size - header_size} bytes of samples",
            f"{expected} for sample_count {header['sample_count']}",
        )
    if "sample_checksum" in header and (coding, width) == ("pcm", 2):
        _check_sphere_checksum(path, header_size, order, int(header["sample_checksum"]))
    return Layout(int(header["sample_count"]), channels, float(header["sample_rate"]))


def _check_sphere_checksum(path: Path, offset: int, order: str, declared: int) -> None:
    """NIST's `sp_compute_short_checksum`: the 16-bit samples added as unsigned values, in the
    file's byte order, modulo 2**16."""
    with open(path, "rb") as f:
        f.seek(offset)
        samples = np.frombuffer(f.read(), "<u2" if order == "01" else ">u2")
    found = int(samples.sum(dtype=np.uint64) % 2**16)
    if found != declared:
        raise BadInputError(path, f"sample checksum {found}", f"{declared} as its header says")


def check_header(path: Path) -> Layout:
    """The layout of a WAV or SPHERE file, its header checked (`check_wav`, `check_sphere`), and
    long enough to be a word (`MIN_DURATION_S`)."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(SPHERE_MAGIC):
        layout = check_sphere(path)
    elif head[:4] == WAV_MAGIC[0]:
        layout = check_wav(path)
    else:
        raise BadInputError(path, f"header {head!r}", "a WAV (RIFF/WAVE) or NIST SPHERE file")
    shortest = math.ceil(MIN_DURATION_S * layout.rate)
    if layout.frames < shortest:
        raise BadInputError(
            path,
            f"too short: {layout.frames} samples",
            f"at least {shortest} ({MIN_DURATION_S * 1000:.0f} ms at {layout.rate:g} Hz, "
            "one analysis window of the audio front end)",
        )
    return layout


def read_audio(path: Path) -> AudioClip:
    """One recording as a mono `AudioClip` (float32 in [-1, 1], channels averaged, as librosa's
    `to_mono` does), at the file's own rate; the encoder resamples. The decoded samples must be
    exactly what the checked header promised."""
    path = Path(path)
    layout = check_header(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as err:
        raise BadInputError(path, f"unreadable audio ({err})", "a WAV or NIST SPHERE file") from err
    if (samples.shape, rate) != ((layout.frames, layout.channels), layout.rate):
        raise BadInputError(
            path,
            f"{samples.shape[0]} x {samples.shape[1]} samples at {rate} Hz decoded",
            f"{layout.frames} x {layout.channels} at {layout.rate:g} Hz as its header says",
        )
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return AudioClip(np.ascontiguousarray(mono), int(rate))
