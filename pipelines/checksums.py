"""Checksums that tie shards to their source files and let a rerun trust what is on disk.

Sources are fingerprinted pragmatically: a file, or a folder of at most `MAX_HASHED_FILES` files
(an IDX pair, EMNIST's gzip folder, a zip), gets one sha256 per file; a bigger folder (N-MNIST's
`.bin` tree, thousands of recordings) gets one sha256 over its sorted listing of (relative path,
size in bytes), which catches added, removed, renamed and truncated files without reading
gigabytes. Hidden files (`.name`) are ignored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MAX_HASHED_FILES = 64
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_checksums(source: Path | None) -> dict[str, str]:
    """`{relative path: "sha256:<hex>"}` per file, or `{".": "listing-sha256:<hex> files=N
    bytes=B"}` for a big folder; `{}` for a reader that needs no files (digits)."""
    if source is None:
        return {}
    source = Path(source)
    if source.is_file():
        return {source.name: "sha256:" + sha256_file(source)}
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )
    if len(files) <= MAX_HASHED_FILES:
        return {p.relative_to(source).as_posix(): "sha256:" + sha256_file(p) for p in files}
    listing = hashlib.sha256()
    total = 0
    for p in files:
        size = p.stat().st_size
        total += size
        listing.update(f"{p.relative_to(source).as_posix()}\t{size}\n".encode())
    return {".": f"listing-sha256:{listing.hexdigest()} files={len(files)} bytes={total}"}
