"""The body of one conversion task: make sure one planned shard exists, whole and as planned.

It runs inside a Ray task (or inline, for tests): it trusts a shard already on disk when the
footer carries the planned key and, where an earlier manifest recorded one, the file's sha256
matches; otherwise it loads the shard's payloads through the reader, encodes every sample with its
own random stream and writes the shard atomically. Under `skip_bad`, a `BadInputError` costs only
the samples of the file it names, which are reported back for the manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.encoders import EncoderParams, encode
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import ShardEntry, SkippedFile
from hm2bp.pipelines.seeding import sample_rng
from hm2bp.pipelines.shard_plan import ShardPlan
from hm2bp.pipelines.shards import SHARD_KEY, EncodedSample, shard_info, shard_table, write_shard
from hm2bp.pipelines.source import Payload, Reader, SampleRef, skipped_file
from hm2bp.pipelines.storage import read_bytes, resolve


@dataclass(frozen=True)
class ShardJob:
    """Everything a task needs besides the reader; small, so it travels cheaply."""

    plan: ShardPlan
    out: str
    source: Path | None
    schema: pa.Schema  # carries the dataset metadata (`hm2bp.dataset`)
    encoder: EncoderParams
    seed: int
    skip_bad: bool
    keep_pixels: bool
    expected_sha256: str | None  # what an earlier manifest recorded for this file, if any


@dataclass(frozen=True)
class ShardResult:
    entry: ShardEntry
    labels: dict[int, int]  # label -> rows
    skipped: tuple[SkippedFile, ...]
    reused: bool


def load_payloads(
    reader: Reader, source: Path | None, refs: Sequence[SampleRef], skip_bad: bool
) -> tuple[list[tuple[SampleRef, Payload]], list[SkippedFile]]:
    """Payloads in order, loading the refs in one call while all goes well. After a
    `BadInputError` (only under `skip_bad`) the failing ref is retried alone, since a reader may
    fail ahead of the sample it is yielding, and then the rest is loaded together again."""
    loaded: list[tuple[SampleRef, Payload]] = []
    skipped: list[SkippedFile] = []
    i = 0
    while i < len(refs):
        start = i
        try:
            for payload in reader.load(source, refs[start:]):
                if i == len(refs):
                    break
                loaded.append((refs[i], payload))
                i += 1
        except BadInputError:
            if not skip_bad:
                raise
            try:
                loaded.append((refs[i], next(iter(reader.load(source, refs[i : i + 1])))))
            except BadInputError as err:
                skipped.append(skipped_file(err, (refs[i].sample_id,)))
            i += 1
            continue
        if i < len(refs):
            raise ValueError(
                f"{type(reader).__name__}.load: {i - start} payloads for {len(refs) - start} refs "
                "(expected one payload per ref)"
            )
    return loaded, skipped


def _reuse(job: ShardJob) -> ShardResult | None:
    fs, folder = resolve(job.out)
    path = f"{folder}/{job.plan.file}"
    info = shard_info(fs, path)
    if info is None or info[1].get("key") != job.plan.key:
        return None
    sha256 = sha256_bytes(read_bytes(fs, path))
    if job.expected_sha256 not in (None, sha256):
        return None
    rows, facts = info
    skipped = tuple(
        SkippedFile(s["path"], s["reason"], tuple(s["sample_ids"])) for s in facts["skipped"]
    )
    entry = ShardEntry(job.plan.file, job.plan.split, rows, facts["spikes"], sha256)
    return ShardResult(entry, {int(k): v for k, v in facts["labels"].items()}, skipped, True)


def build_shard(job: ShardJob, reader: Reader) -> ShardResult:
    """Reuse the planned shard if it is already complete, else write it."""
    reused = _reuse(job)
    if reused is not None:
        return reused
    loaded, skipped = load_payloads(reader, job.source, job.plan.refs, job.skip_bad)
    samples = []
    for ref, payload in loaded:
        rng = sample_rng(job.seed, ref.sample_id)
        times, neurons = encode(payload, job.encoder, rng, reader.facts)
        pixels = payload if job.keep_pixels else None
        samples.append(EncodedSample(ref, job.plan.split, times, neurons, pixels))
    labels = dict(Counter(s.ref.label for s in samples))
    spikes = sum(len(s.times) for s in samples)
    facts = {
        "key": job.plan.key,
        "spikes": spikes,
        "labels": labels,
        "skipped": [asdict(s) for s in skipped],
    }
    metadata = {**job.schema.metadata, SHARD_KEY: json.dumps(facts).encode()}
    table = shard_table(samples, job.schema, metadata)
    fs, folder = resolve(job.out)
    sha256 = write_shard(fs, f"{folder}/{job.plan.file}", table)
    entry = ShardEntry(job.plan.file, job.plan.split, len(samples), spikes, sha256)
    return ShardResult(entry, labels, tuple(skipped), False)
