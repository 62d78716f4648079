"""The folder a conversion writes into, and who owns what in it.

A conversion folder belongs to one conversion (its options: `Manifest.options`). Running the same
conversion again resumes or reuses it; a conversion with other options is refused, so that a typo
in `--seed` never silently replaces a data set that runs were trained on. `--overwrite` replaces
it, atomically as far as readers can tell: the new shards are written under `.replacing/` in the
folder, and only once all of them are whole does the commit run (the old manifest goes first, so a
reader meets either the old conversion, or no manifest and the advice to rerun, or the new one;
then the new shards move in, the old ones go, and the new manifest appears last). A commit that is
cut short is finished by the next run of the same command.

`convert` deletes only files that a manifest of its own names (and its own temporaries); a file in
the way that no manifest names, and that is not a shard of this same conversion, is an error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from hm2bp.pipelines.storage import remove_temporaries, resolve

STAGING = ".replacing"
REPLACED = "replaced-manifest.json"  # the old manifest, kept in the staging folder mid-commit


@dataclass(frozen=True)
class Destination:
    """Where a conversion's tasks write (`write_to`: the folder, or its staging folder when it
    replaces another conversion), and the sha256 a finished earlier run recorded per shard."""

    out: str
    write_to: str
    recorded: dict[str, str]
    replacing: bool


def _join(out: str, name: str) -> str:
    return f"{out.rstrip('/')}/{name}"


def _finished(location: str) -> Manifest | None:
    """The manifest in `location`, None where there is none; an unreadable one is an error."""
    try:
        return read_manifest(location)
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise BadInputError(
            _join(location, MANIFEST_NAME),
            f"an unreadable manifest ({err})",
            "hm2bp's manifest of the conversion in this folder; move the folder away or choose "
            "another --out",
        ) from None


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """As JSON holds it (tuples as lists), so that a manifest read back compares equal."""
    return json.loads(json.dumps(options))


def _remove_staging(fs: pafs.FileSystem, folder: str) -> None:
    if fs.get_file_info(f"{folder}/{STAGING}").type == pafs.FileType.Directory:
        fs.delete_dir(f"{folder}/{STAGING}")


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = [key for key in wanted if found.get(key) != wanted[key]]
    return ", ".join(f"{key} {found.get(key)!r} (this command: {wanted[key]!r})" for key in keys)


def _footer_options(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    """The conversion options in a shard's footer, None when the file is not an hm2bp shard."""
    try:
        with fs.open_input_file(path) as f:
            metadata = pq.ParquetFile(f).schema_arrow.metadata or {}
        header = json.loads(metadata[b"hm2bp.dataset"])
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None
    header.pop("software", None)
    return header


def prepare(out: str, manifest: Manifest, planned: Sequence[str], overwrite: bool) -> Destination:
    """Make `out` ready for the conversion `manifest` (its constant part) with shard files
    `planned`: create it, drop temporaries, finish a cut-short commit of this conversion, and
    refuse what it must not touch. Raises `BadInputError` naming the folder or file."""
    fs, folder = resolve(out)
    fs.create_dir(folder, recursive=True)
    remove_temporaries(fs, folder)
    staging = _join(out, STAGING)
    wanted = _plain(manifest.options())
    existing = _finished(out)
    staged = _finished(staging)
    if staged is not None and _plain(staged.options()) == wanted:
        commit(out, staged)
        existing = staged
    if existing is not None and _plain(existing.options()) == wanted:
        _remove_staging(fs, folder)
        return Destination(out, out, {e.file: e.sha256 for e in existing.shards}, False)
    if existing is not None and not overwrite:
        raise BadInputError(
            folder,
            f"holds a finished conversion of {existing.dataset} with other options: "
            + _differences(_plain(existing.options()), wanted),
            "an empty folder, or this same conversion to resume; pass --overwrite to replace it, "
            "or choose another --out",
        )
    named = {e.file for e in existing.shards} if existing is not None else set()
    for name in planned:
        path = f"{folder}/{name}"
        if name in named or fs.get_file_info(path).type == pafs.FileType.NotFound:
            continue
        options = _footer_options(fs, path)
        if options is None:
            raise BadInputError(
                path,
                "a file that no hm2bp manifest names, in the way of a shard",
                "no such file (convert never deletes what it did not write); move it away or "
                "choose another --out",
            )
        if options != wanted:
            raise BadInputError(
                path,
                "a shard of an unfinished conversion with other options: "
                + _differences(options, wanted),
                "shards of this conversion only; delete the unfinished conversion's shards or "
                "choose another --out",
            )
    if existing is None:
        return Destination(out, out, {}, False)
    fs.create_dir(f"{folder}/{STAGING}", recursive=True)
    remove_temporaries(fs, f"{folder}/{STAGING}")
    return Destination(out, staging, {}, True)


def finish(destination: Destination, manifest: Manifest) -> None:
    """Publish the finished conversion: its manifest, and when replacing, the commit."""
    write_manifest(destination.write_to, manifest)
    if destination.replacing:
        commit(destination.out, manifest)


def commit(out: str, manifest: Manifest) -> None:
    """Move the staged conversion `manifest` (complete under `.replacing/`) into `out`, in an
    order that a reader and a rerun can always make sense of (see the module docstring)."""
    fs, folder = resolve(out)
    staging = f"{folder}/{STAGING}"
    if fs.get_file_info(f"{folder}/{MANIFEST_NAME}").type == pafs.FileType.File:
        fs.move(f"{folder}/{MANIFEST_NAME}", f"{staging}/{REPLACED}")
    for entry in manifest.shards:
        if fs.get_file_info(f"{staging}/{entry.file}").type == pafs.FileType.File:
            fs.move(f"{staging}/{entry.file}", f"{folder}/{entry.file}")
    kept = {e.file for e in manifest.shards}
    with contextlib.suppress(FileNotFoundError):
        replaced = read_manifest(f"{staging}/{REPLACED}")
        for entry in replaced.shards:
            if entry.file not in kept:
                with contextlib.suppress(FileNotFoundError):
                    fs.delete_file(f"{folder}/{entry.file}")
    fs.move(f"{staging}/{MANIFEST_NAME}", f"{folder}/{MANIFEST_NAME}")
    _remove_staging(fs, folder)
