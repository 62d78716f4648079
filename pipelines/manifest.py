"""`manifest.json`: everything constant for a converted data set, and the list of its shards.

The manifest is what a trainer checks before it trusts the shards: input shape (so the input
count), T, dt, the encoder and its parameters, seed, classes. It also records where the samples
came from (source checksums, the reader and its options, the reader's note on what it did to the
values, software versions), what came out (counts per split
and class, every shard's file name, split, rows, spikes and sha256) and what was left out (skipped
files with the reason). The constant part (`Manifest.header()`) is also stored in every shard's
Parquet schema metadata under `hm2bp.dataset`, so that a lone shard explains itself.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.encoders import EncoderParams, encoder_from_record
from hm2bp.pipelines.shard_plan import SHARD_NAME
from hm2bp.pipelines.storage import read_bytes, resolve, write_atomic

FORMAT_VERSION = 2  # 2: rows_per_shard and skip_bad recorded; shard names carry the conversion
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ShardEntry:
    """One shard file: `file` is relative to the manifest's folder."""

    file: str
    split: str
    rows: int
    spikes: int
    sha256: str


@dataclass(frozen=True)
class SkippedFile:
    """A source file left out under `--skip-bad`, with the reader's reason and the samples lost."""

    path: str
    reason: str
    sample_ids: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    format: int
    dataset: str
    kind: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    T: int
    dt_ms: float
    encoder: str
    encoder_params: dict[str, Any]
    seed: int
    split: str
    keep_pixels: bool
    rows_per_shard: int
    skip_bad: bool
    reader: str
    reader_options: dict[str, Any]
    note: str
    source_labels: tuple[int, ...]
    sources: dict[str, str]
    software: dict[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> samples
    shards: tuple[ShardEntry, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def samples(self) -> int:
        return sum(e.rows for e in self.shards)

    @property
    def spikes(self) -> int:
        return sum(e.spikes for e in self.shards)

    def entries(self, split: str | None, where: str) -> list[ShardEntry]:
        """The shards of `split` (all for None); an error naming `where` when there are none."""
        found = [e for e in self.shards if split in (None, e.split)]
        if not found:
            splits = ", ".join(sorted({e.split for e in self.shards}))
            raise ValueError(
                f"split: no shards for {split!r} in {where} (expected one of {splits})"
            )
        return found

    def encoding(self) -> EncoderParams:
        """The encoder's parameters as their dataclass (for example to re-encode raw pixels)."""
        return encoder_from_record(self.encoder, self.encoder_params)

    def header(self) -> dict[str, Any]:
        """The constant part, as stored in every shard's schema metadata."""
        body = asdict(self)
        for name in ("counts", "shards", "skipped"):
            del body[name]
        return body

    def options(self) -> dict[str, Any]:
        """What decides a conversion's shards, the software versions aside: two runs of
        `convert` are the same conversion when their options are equal."""
        body = self.header()
        del body["software"]
        return body

    def repair_hint(self, folder: str) -> str:
        """The `hm2bp convert` command that writes the shards of `folder` again."""
        source = ["--source", "<the same source>"] if self.sources else []
        command = ["hm2bp", "convert", self.reader, *source, "--out", folder]
        command += ["--T", str(self.T), "--dt", str(self.dt_ms), "--seed", str(self.seed)]
        command += ["--split", self.split, "--rows-per-shard", str(self.rows_per_shard)]
        command += ["--skip-bad"] * self.skip_bad + ["--keep-pixels"] * self.keep_pixels
        for key, value in self.reader_options.items():
            command += ["-o", f"{key}={json.dumps(value)}"]
        return f"run `{shlex.join(command)}` to write it again"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def sha256(self) -> str:
        """sha256 of `manifest.json` as written (`to_json`): it lists every shard's sha256, so
        it names the exact data a run trained on (MLflow records it as the run's data set)."""
        return sha256_bytes(self.to_json().encode())


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def manifest_from_json(text: str, where: str) -> Manifest:
    """Parse and check a manifest; errors name `where` and the bad key."""
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as err:
        raise ValueError(f"{where}: not JSON ({err}; expected an hm2bp manifest)") from None
    if not isinstance(body, dict):
        raise ValueError(f"{where}: a JSON {type(body).__name__} (expected an hm2bp manifest)")
    if body.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{where}: format {body.get('format')!r} (expected {FORMAT_VERSION}; "
            "convert the data set again with this version of hm2bp)"
        )
    names = {f.name for f in fields(Manifest)}
    missing, unknown = names - set(body), set(body) - names
    if missing or unknown:
        raise ValueError(
            f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)} "
            "(expected exactly the keys of hm2bp.pipelines.manifest.Manifest)"
        )
    try:
        return _manifest(body, where)
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(
            f"{where}: malformed ({type(err).__name__}: {err}; expected the types of "
            "hm2bp.pipelines.manifest.Manifest)"
        ) from None


def _manifest(body: dict[str, Any], where: str) -> Manifest:
    body["classes"] = tuple(body["classes"])
    body["input_shape"] = tuple(body["input_shape"])
    body["source_labels"] = tuple(body["source_labels"])
    body["shards"] = tuple(ShardEntry(**e) for e in body["shards"])
    for entry in body["shards"]:
        types = (entry.file, entry.split, entry.rows, entry.spikes, entry.sha256)
        expected = (str, str, int, int, str)
        if any(
            not isinstance(v, t) or isinstance(v, bool)
            for v, t in zip(types, expected, strict=True)
        ):
            raise TypeError(f"shard entry {entry}")
        if not SHARD_NAME.match(entry.file) or not entry.file.startswith(f"{entry.split}-"):
            raise ValueError(
                f"{where}: shard file {entry.file!r} of split {entry.split!r} (expected a name "
                "like <split>-00000-0123abcd.parquet inside the manifest's folder, no path)"
            )
    uncounted = {e.split for e in body["shards"]} - set(body["counts"])
    if uncounted:
        raise ValueError(f"{where}: shards of splits {sorted(uncounted)} that its counts lack")
    for split, classes in body["counts"].items():
        rows = sum(e.rows for e in body["shards"] if e.split == split)
        if rows != sum(classes.values()):
            raise ValueError(
                f"{where}: {rows} rows in the shards of split {split!r} (expected "
                f"{sum(classes.values())} as its counts say)"
            )
    body["skipped"] = tuple(
        SkippedFile(s["path"], s["reason"], tuple(s["sample_ids"])) for s in body["skipped"]
    )
    return Manifest(**body)


def read_manifest(location: str) -> Manifest:
    """The manifest of a converted data set: `location` is its folder (a local path or a URI such
    as `s3://bucket/shards/mnist`) or the `manifest.json` itself."""
    fs, path = resolve(location)
    if not path.endswith(".json"):
        path = f"{path}/{MANIFEST_NAME}"
    try:
        text = read_bytes(fs, path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no manifest (expected a folder written by `hm2bp convert`; an interrupted "
            "conversion writes it last, so run the same command again to finish)"
        ) from None
    return manifest_from_json(text, path)


def write_manifest(location: str, manifest: Manifest) -> None:
    """Write `manifest.json` atomically into the folder `location`."""
    fs, folder = resolve(location)
    write_atomic(fs, f"{folder}/{MANIFEST_NAME}", manifest.to_json().encode())
