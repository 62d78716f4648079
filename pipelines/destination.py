"""The folder a conversion writes into, and who owns what in it.

A conversion folder belongs to one conversion (its options: `Manifest.options`). Running the same
conversion again resumes or reuses it; a conversion with other options is refused, so that a typo
in `--seed` never silently replaces a data set that runs were trained on, unless `--overwrite`
asks for it.

Replacing needs no staging: shard names carry the conversion (`shard_plan.py`), so the new shards
are written beside the old ones, and the single atomic write of `manifest.json` is the switch from
one conversion to the other (a reader meets the old manifest with its shards, or the new one with
its shards). The old conversion's files go after the switch; so that a crash between the switch
and the deletions loses track of nothing, their names are written first to `replaced.json`, which
the next run finishes. The same path serves a rerun after an upgrade (same options, new software
versions: new shard names, then the switch).

`convert` deletes only files that a manifest of its own names (and its own temporaries); a file in
the way of a planned shard that is not a shard of this conversion is an error naming it. One
`convert` at a time per folder: a second one would delete the first's temporaries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from hm2bp.pipelines.shards import shard_info
from hm2bp.pipelines.storage import read_bytes, remove_temporaries, resolve, write_atomic

REPLACED = "replaced.json"  # names of a replaced conversion's files, until they are deleted


@dataclass(frozen=True)
class Destination:
    """A folder made ready for one conversion: the sha256 that its finished earlier run recorded
    per shard (reused where the bytes still match), and the files the switch will make stale."""

    out: str
    recorded: dict[str, str]
    stale: tuple[str, ...]


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """As JSON holds it (tuples as lists), so that a manifest read back compares equal."""
    return json.loads(json.dumps(options))


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = [key for key in wanted if found.get(key) != wanted[key]]
    return ", ".join(f"{key} {found.get(key)!r} (this command: {wanted[key]!r})" for key in keys)


def _named_files(fs: pafs.FileSystem, path: str) -> list[str] | None:
    """The shard files an hm2bp manifest of any format names, None when there is no manifest."""
    try:
        body = json.loads(read_bytes(fs, path))
        return [str(entry["file"]) for entry in body["shards"]]
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as err:
        raise BadInputError(
            path,
            f"an unreadable manifest ({type(err).__name__}: {err})",
            "hm2bp's manifest of the conversion in this folder; move the folder away or choose "
            "another --out",
        ) from None


def _delete_replaced(fs: pafs.FileSystem, folder: str) -> None:
    """Finish a switch that was cut short: delete the replaced files no manifest names now."""
    names = _named_files(fs, f"{folder}/{REPLACED}")
    if names is None:
        return
    current = set(_named_files(fs, f"{folder}/{MANIFEST_NAME}") or ())
    for name in names:
        if name not in current:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(f"{folder}/{name}")
    fs.delete_file(f"{folder}/{REPLACED}")


def prepare(out: str, manifest: Manifest, planned: Sequence[str], overwrite: bool) -> Destination:
    """Make `out` ready for the conversion `manifest` (its constant part) with shard files
    `planned`: create it, finish a cut-short switch, drop temporaries, and refuse what it must not
    touch. Raises `BadInputError` naming the folder or the file."""
    fs, folder = resolve(out)
    fs.create_dir(folder, recursive=True)
    _delete_replaced(fs, folder)
    remove_temporaries(fs, folder)
    named = _named_files(fs, f"{folder}/{MANIFEST_NAME}")
    existing = None
    if named is not None:
        try:
            existing = read_manifest(out)
        except ValueError as err:  # another format: its files are known, its options are not
            if not overwrite:
                raise BadInputError(
                    f"{folder}/{MANIFEST_NAME}",
                    str(err).removeprefix(f"{folder}/{MANIFEST_NAME}: "),
                    "a manifest of this version; pass --overwrite to replace that conversion",
                ) from None
    wanted = _plain(manifest.options())
    same = existing is not None and _plain(existing.options()) == wanted
    if named is not None and not same and not overwrite:
        raise BadInputError(
            folder,
            f"holds a finished conversion of {existing.dataset} with other options: "
            + _differences(_plain(existing.options()), wanted),
            "an empty folder, or this same conversion to resume; pass --overwrite to replace it, "
            "or choose another --out",
        )
    for name in set(planned) - set(named or ()):
        path = f"{folder}/{name}"
        if fs.get_file_info(path).type != pafs.FileType.NotFound and shard_info(fs, path) is None:
            raise BadInputError(
                path,
                "a file that is not an hm2bp shard, in the way of a shard",
                "no such file (convert never deletes what it did not write); move it away or "
                "choose another --out",
            )
    recorded = {e.file: e.sha256 for e in existing.shards} if same else {}
    return Destination(out, recorded, tuple(sorted(set(named or ()) - set(planned))))


def finish(destination: Destination, manifest: Manifest) -> None:
    """Switch the folder to the finished conversion `manifest`, then delete what it replaced."""
    fs, folder = resolve(destination.out)
    if destination.stale:
        record = {"shards": [{"file": name} for name in destination.stale]}
        write_atomic(fs, f"{folder}/{REPLACED}", json.dumps(record).encode())
    write_manifest(destination.out, manifest)
    _delete_replaced(fs, folder)
