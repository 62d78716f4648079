"""Reading one recording, WAV or NIST SPHERE, into an `AudioClip`; shared by the TI46 and speech
folder readers.

libsndfile (through soundfile) decodes the samples of both formats, SPHERE in either byte order.
It cannot decode SPHERE's embedded compression (shorten, wavpack; TIDIGITS, TIMIT and other LDC
discs ship it), and it silently reads fewer samples from a truncated SPHERE file, so we parse the
SPHERE header ourselves first: to refuse compressed files with the command that unpacks them, and
to check the payload size against `sample_count`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.source import AudioClip

SPHERE_MAGIC = b"NIST_1A\n"
# Codings libsndfile decodes from SPHERE; anything else is compressed or foreign.
SPHERE_CODINGS = {"pcm", "ulaw", "alaw"}
DECOMPRESS_HINT = (
    "uncompressed PCM; unpack it first with NIST's sph2pipe, e.g. `sph2pipe -f wav in.sph out.wav`"
)
# Rates the audio encoder resamples from. Below 4 kHz speech loses the formants the filterbank
# listens to; above 192 kHz is not speech recording.
SAMPLE_RATE_RANGE_HZ = (4_000, 192_000)

_FIELD = re.compile(r"(\S+) -(i|r|s(\d+)) (.*)")


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
        if kind == "i":
            fields[name] = int(value)
        elif kind == "r":
            fields[name] = float(value)
        else:
            fields[name] = value[: int(length)]
    raise BadInputError(path, f"no end_head in the first {size} bytes", "a complete SPHERE header")


def check_rate(path: Path, rate: float) -> None:
    """Refuse a sample rate the encoder cannot resample from (0 in a broken header, say)."""
    low, high = SAMPLE_RATE_RANGE_HZ
    if not low <= rate <= high:
        raise BadInputError(path, f"sample rate {rate} Hz", f"{low}..{high} Hz")


def wav_rate(path: Path) -> int | None:
    """The sample rate in a RIFF/WAVE `fmt ` chunk, or None if there is none; read only to say
    why libsndfile refused a file (it reports a rate of 0 as an 'incomplete SF_INFO')."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"fmt ":
                fmt = f.read(8)  # format tag, channels (2 bytes each), sample rate (4)
                return int.from_bytes(fmt[4:8], "little") if len(fmt) == 8 else None
            f.seek(size + size % 2, 1)  # chunks are padded to even sizes
    return None


def check_sphere(path: Path) -> None:
    """Refuse what libsndfile would misread: compressed codings, payloads shorter than the
    header's `sample_count`, rates out of range."""
    header = read_sphere_header(path)
    check_rate(path, float(header.get("sample_rate", 0)))
    coding = str(header.get("sample_coding", "pcm"))
    if coding not in SPHERE_CODINGS:
        raise BadInputError(path, f"sample_coding {coding!r}", DECOMPRESS_HINT)
    expected = (
        int(header.get("sample_count", 0))
        * int(header.get("channel_count", 1))
        * int(header.get("sample_n_bytes", 2))
    )
    found = path.stat().st_size - int(header["header_size"])
    if found < expected:
        raise BadInputError(
            path,
            f"{found} bytes of samples",
            f"{expected} for sample_count {header['sample_count']}",
        )


def read_audio(path: Path) -> AudioClip:
    """One recording as a mono `AudioClip` (float32 in [-1, 1], channels averaged, as librosa's
    `to_mono` does), at the file's own rate; the encoder resamples."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(SPHERE_MAGIC)) == SPHERE_MAGIC:
            check_sphere(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as err:
        rate = wav_rate(path)
        if rate is not None:
            check_rate(path, rate)
        raise BadInputError(path, f"unreadable audio ({err})", "a WAV or NIST SPHERE file") from err
    check_rate(path, rate)
    if samples.shape[0] == 0:
        raise BadInputError(path, "no samples", "a recording of at least one sample")
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return AudioClip(np.ascontiguousarray(mono), int(rate))
