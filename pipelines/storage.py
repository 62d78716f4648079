"""Where shards live: a local path or any pyarrow filesystem URI, written atomically.

A cluster needs shared storage, so a destination is either a local path or a URI that
`pyarrow.fs.FileSystem.from_uri` understands (`file:///...`, `s3://bucket/prefix`, ...). Every file
is written under a temporary name in its destination folder and renamed when complete, so a crash
never leaves a half file that looks whole; the temporary names are recognisable, so a rerun removes
the leftovers.
"""

from __future__ import annotations

import os
import re
import uuid

import pyarrow.fs as pafs

_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


def absolute(destination: str | os.PathLike) -> str:
    """A URI as it is, a local path made absolute: Ray tasks do not share the driver's cwd."""
    text = os.fspath(destination)
    return text if "://" in text else os.path.abspath(text)


def resolve(destination: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI."""
    text = os.fspath(destination)
    if "://" not in text:
        return pafs.LocalFileSystem(), os.path.abspath(text)
    fs, path = pafs.FileSystem.from_uri(text)
    return fs, path.rstrip("/")


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary name in the same folder, then rename."""
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(temp) as stream:
        stream.write(data)
    fs.move(temp, path)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def file_names(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Names of the files directly in `folder` (none when it does not exist)."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return [info.base_name for info in infos if info.type == pafs.FileType.File]


def remove_temporaries(fs: pafs.FileSystem, folder: str) -> None:
    """Delete the temporary files an interrupted run left behind."""
    for name in file_names(fs, folder):
        if _TEMP.match(name):
            fs.delete_file(f"{folder}/{name}")
