"""Writers of small, format-correct input files for the reader tests.

Each writes the real on-disk format byte for byte (as the format's documentation lays it out, not
through the reader under test), so that a test's fixture means what a real file means.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, values: np.ndarray, gz: bool | None = None) -> Path:
    """An IDX file of unsigned bytes: magic `0x0000 08 <ndim>`, big-endian dims, values.
    Gzipped if `gz`, or (when None) if the name ends in `.gz`."""
    values = np.asarray(values, np.uint8)
    data = struct.pack(f">I{values.ndim}I", 0x0800 + values.ndim, *values.shape) + values.tobytes()
    gz = path.name.endswith(".gz") if gz is None else gz
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def nmnist_bytes(x, y, p, t) -> bytes:
    """N-MNIST events, 5 bytes each: x, y, then p in bit 7 above the 23-bit timestamp (us)."""
    x, y, p, t = (np.asarray(v, np.int64) for v in (x, y, p, t))
    buf = np.zeros((len(x), 5), np.uint8)
    buf[:, 0], buf[:, 1] = x, y
    buf[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    buf[:, 3] = (t >> 8) & 0xFF
    buf[:, 4] = t & 0xFF
    return buf.tobytes()


def sphere_bytes(
    samples: np.ndarray,
    rate: int = 12500,
    byte_order: str = "01",
    coding: str = "pcm",
    payload: bytes | None = None,
    extra: tuple[str, ...] = (),
) -> bytes:
    """A NIST SPHERE file of 16-bit samples: a 1024-byte `NIST_1A` header (with the `extra`
    field lines, such as `sample_checksum -i 123`), then the samples in `byte_order` (`01`
    little-endian, `10` big-endian) unless `payload` replaces them."""
    samples = np.asarray(samples, np.int16)
    fields = [
        "channel_count -i 1",
        f"sample_rate -i {rate}",
        "sample_n_bytes -i 2",
        "sample_sig_bits -i 16",
        f"sample_coding -s{len(coding)} {coding}",
        f"sample_byte_format -s2 {byte_order}",
        f"sample_count -i {len(samples)}",
        *extra,
        "end_head",
    ]
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\n").encode().ljust(1024, b" ")
    if payload is None:
        payload = samples.astype("<i2" if byte_order == "01" else ">i2").tobytes()
    return header + payload


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """A RIFF/WAVE file of 16-bit PCM, written by hand so that any rate (even 0) can be stored."""
    data = np.asarray(samples, "<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
