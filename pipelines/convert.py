"""Convert a data set into spike shards: index on the driver, one Ray task per shard.

`convert` is what `hm2bp convert` runs. The driver indexes the source (cheap), assigns splits,
plans the shards and fingerprints the sources; each Ray task then keeps its shard if it is already
complete (`convert_task.py`) or loads, encodes and writes it atomically. The manifest is written
last, also atomically. So a conversion that stops anywhere (a crash, a bad file, Ctrl-C) leaves
only whole shards, and running the same command again finishes it without duplicating or losing
a sample and without rewriting finished shards.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ray
from hm2bp.pipelines import destination
from hm2bp.pipelines.checksums import source_checksums
from hm2bp.pipelines.convert_task import ShardJob, ShardResult, build_shard
from hm2bp.pipelines.encoders import (
    EncoderParams,
    check_encoder,
    check_step,
    default_encoder,
    encoder_name,
    input_shape,
    params_record,
)
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import (
    FORMAT_VERSION,
    Manifest,
    SkippedFile,
)
from hm2bp.pipelines.registry import get_reader, reader_options
from hm2bp.pipelines.shard_plan import conversion_fingerprint, plan_shards
from hm2bp.pipelines.shards import DATASET_KEY, shard_schema
from hm2bp.pipelines.source import DatasetFacts, Reader, SampleRef
from hm2bp.pipelines.splits import Split, default_split, parse_split
from hm2bp.pipelines.storage import absolute, check_shared
from tqdm.auto import tqdm


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion produced, for the CLI's printout and for callers."""

    dataset: str
    out: str
    samples: int
    spikes: int
    seconds: float
    shards_written: int
    shards_reused: int
    counts: dict[str, dict[str, int]]
    skipped: tuple[SkippedFile, ...]

    @property
    def spikes_per_sample(self) -> float:
        return self.spikes / max(self.samples, 1)

    def summary(self) -> dict[str, Any]:
        """The JSON object of `hm2bp convert --json`."""
        record = dataclasses.asdict(self)
        record["spikes_per_sample"] = self.spikes_per_sample
        return record

    def format(self) -> str:
        splits = ", ".join(f"{s} {sum(c.values())}" for s, c in self.counts.items())
        rate = self.samples / max(self.seconds, 1e-9)
        lines = [
            f"{self.dataset} -> {self.out}",
            f"  samples  {self.samples} ({splits})",
            f"  spikes   {self.spikes} ({self.spikes_per_sample:.1f} per sample)",
            f"  shards   {self.shards_written + self.shards_reused} "
            f"({self.shards_written} written, {self.shards_reused} already complete)",
            f"  time     {self.seconds:.1f} s ({rate:.0f} samples/s)",
        ]
        lines += [f"  skipped  {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def convert(
    dataset: str | Reader,
    *,
    out: str,
    source: str | Path | None = None,
    encoder: EncoderParams | None = None,
    T: int | None = None,
    dt_ms: float | None = None,
    seed: int = 0,
    split: str | None = None,
    rows_per_shard: int = 1000,
    skip_bad: bool = False,
    keep_pixels: bool = False,
    reader_options: Mapping[str, Any] | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> ConversionSummary:
    """Convert `dataset` (a registered reader's name, or a `Reader`) from `source` into shards and
    a manifest under `out` (a local path or a pyarrow filesystem URI).

    `encoder` defaults to the reference's encoder for the data's kind; `encoder_options` (its
    fields by name, e.g. `{"front_end": "gammatone"}`), `T` and `dt_ms` override its values.
    `split` is a spec of `splits.py` (default: `default_split`). Raises the reader's
    `BadInputError` unless `skip_bad`, which lists the skipped files in the manifest instead.
    A folder holding a conversion with other options is refused unless `overwrite`, which
    replaces it atomically (`destination.py`). `progress` shows a bar over finished shards on
    stderr when it is a terminal. Calls `ray.init()` (joining `RAY_ADDRESS`, else starting a
    local Ray) unless Ray is running.
    """
    started = time.perf_counter()
    source = None if source is None else Path(source).absolute()
    out = absolute(out)
    reader, reader_name, options = _reader(dataset, source, dict(reader_options or {}))
    params = _encoder(reader.facts, encoder, dict(encoder_options or {}), T, dt_ms)
    if keep_pixels and reader.facts.kind != "image":
        raise ValueError(
            f"keep_pixels: {reader.facts.name!r} holds {reader.facts.kind} (expected images)"
        )
    index = reader.index(source, skip_bad=skip_bad)
    refs = index.refs
    _check_unique(refs, source)
    spec = parse_split(split) if split else _default_split(refs, index.skipped, source)
    manifest = _manifest(
        reader.facts,
        params,
        reader=reader_name,
        reader_options=options,
        split=spec.spec,
        seed=seed,
        keep_pixels=keep_pixels,
        rows_per_shard=rows_per_shard,
        skip_bad=skip_bad,
        source=source,
    )
    meta_keys = sorted({key for ref in refs for key in ref.meta})
    fingerprint = conversion_fingerprint(manifest.header(), meta_keys=meta_keys)
    plans = plan_shards(refs, spec.assign(refs, seed), rows_per_shard, seed, fingerprint)
    schema = shard_schema(meta_keys, keep_pixels).with_metadata(
        {DATASET_KEY: json.dumps(manifest.header()).encode()}
    )
    target = destination.prepare(out, manifest, [p.file for p in plans], overwrite)
    jobs = [
        ShardJob(
            p,
            out,
            source,
            schema,
            params,
            seed,
            skip_bad,
            keep_pixels,
            target.recorded.get(p.file),
        )
        for p in plans
    ]
    if not ray.is_initialized():
        ray.init()
    check_shared(
        inputs={"--source": None if source is None else str(source)}, outputs={"--out": out}
    )
    results = _run(jobs, reader, progress, f"convert {reader.facts.name}")
    manifest = _finish(manifest, results, index.skipped)
    if manifest.samples == 0:
        raise BadInputError(
            str(source),
            f"no sample converted ({len(manifest.skipped)} files skipped)",
            "at least one readable sample",
        )
    destination.finish(target, manifest)
    return ConversionSummary(
        dataset=manifest.dataset,
        out=out,
        samples=manifest.samples,
        spikes=manifest.spikes,
        seconds=time.perf_counter() - started,
        shards_written=sum(not r.reused for r in results),
        shards_reused=sum(r.reused for r in results),
        counts=manifest.counts,
        skipped=manifest.skipped,
    )


def _default_split(
    refs: Sequence[SampleRef], skipped: Sequence[SkippedFile], source: Path | None
) -> Split:
    """`default_split`, unless skipping files left one split of the source's own: the default
    would then carve a new split out of it (a test set from training data) without a word."""
    own = {ref.split for ref in refs} - {None}
    if skipped and len(own) == 1:
        raise BadInputError(
            str(source),
            f"only the {own.pop()!r} split of the source's own after skipping "
            f"{', '.join(s.path for s in skipped)}",
            "its splits whole, or --split chosen explicitly (e.g. ratio:0.8)",
        )
    return default_split(refs)


def _check_unique(refs: Sequence[SampleRef], source: Path | None) -> None:
    """Every sample id once: a shard with a repeated id is refused by every reader later."""
    first: dict[str, str | int] = {}
    for ref in refs:
        if ref.sample_id in first:
            raise BadInputError(
                str(source),
                f"sample id {ref.sample_id!r} at {first[ref.sample_id]!r} and {ref.locator!r}",
                "each sample once",
            )
        first[ref.sample_id] = ref.locator


def _encoder(
    facts: DatasetFacts,
    encoder: EncoderParams | None,
    options: dict[str, Any],
    T: int | None,
    dt_ms: float | None,
) -> EncoderParams:
    """The given or default encoder with `options`, `T` and `dt_ms` overridden, checked against
    the data."""
    base = encoder or default_encoder(facts.kind)
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"encoder option {unknown[0]!r}: not a parameter of the {encoder_name(base)!r} "
            f"encoder (expected one of {', '.join(sorted(fields))})"
        )
    for key, value in options.items():
        kind = type(getattr(base, key))
        if not (type(value) is kind or (kind is float and type(value) is int)):
            raise ValueError(
                f"encoder option {key}: got {value!r} (expected {kind.__name__}, like the "
                f"{encoder_name(base)!r} encoder's default {getattr(base, key)!r})"
            )
    overrides = {**options, **{k: v for k, v in (("T", T), ("dt_ms", dt_ms)) if v is not None}}
    if "dt_ms" in overrides:
        check_step(overrides["dt_ms"])  # before the encoder's own checks, which compute with it
    params = dataclasses.replace(base, **overrides)
    check_encoder(params, facts)
    return params


def _manifest(
    facts: DatasetFacts,
    params: EncoderParams,
    *,
    reader: str,
    reader_options: dict[str, Any],
    split: str,
    seed: int,
    keep_pixels: bool,
    rows_per_shard: int,
    skip_bad: bool,
    source: Path | None,
) -> Manifest:
    """The manifest's constant part; the shards, counts and skipped files come at the end."""
    return Manifest(
        format=FORMAT_VERSION,
        dataset=facts.name,
        kind=facts.kind,
        classes=tuple(facts.classes),
        input_shape=input_shape(params, facts),
        T=params.T,
        dt_ms=params.dt_ms,
        encoder=encoder_name(params),
        encoder_params=params_record(params),
        seed=seed,
        split=split,
        keep_pixels=keep_pixels,
        rows_per_shard=rows_per_shard,
        skip_bad=skip_bad,
        reader=reader,
        reader_options=reader_options,
        note=facts.note,
        source_labels=tuple(facts.source_labels),
        sources=source_checksums(source),
        software={name: version(name) for name in ("hm2bp", "numpy", "pyarrow", "librosa")},
    )


def _reader(
    dataset: str | Reader, source: Path | None, options: dict[str, Any]
) -> tuple[Reader, str, dict[str, Any]]:
    """The reader, the name the manifest gives it, and all its options (defaults resolved)."""
    if not isinstance(dataset, str):
        if options:
            raise ValueError("reader_options: given with a Reader object (expected a reader name)")
        return dataset, f"{type(dataset).__module__}.{type(dataset).__qualname__}", {}
    reader = get_reader(dataset, source, **options)
    return reader, dataset, {name: getattr(reader, name) for name in reader_options(dataset)}


def _run(jobs: Sequence[ShardJob], reader: Reader, progress: bool, desc: str) -> list[ShardResult]:
    """One Ray task per shard, at most two per CPU in flight. On the first failure no task is
    submitted any more, the few in flight finish (their shards are whole: writes are atomic), and
    the task's own error is raised. Nothing is cancelled: `ray.cancel` racing a task that is just
    finishing aborted the driver on a check in Ray 2.60's task manager."""
    task = ray.remote(num_cpus=1)(build_shard)
    reader_ref = ray.put(reader)
    window = max(2, int(2 * ray.cluster_resources().get("CPU", 1)))
    waiting = list(enumerate(jobs))[::-1]
    pending: dict[ray.ObjectRef, int] = {}
    results: list[ShardResult | None] = [None] * len(jobs)
    failure: ray.exceptions.RayTaskError | None = None
    # disable=None: the bar shows only on a terminal, not in `ray job submit` logs or a pipe.
    with tqdm(total=len(jobs), desc=desc, unit="shard", disable=None if progress else True) as bar:
        while waiting or pending:
            while waiting and failure is None and len(pending) < window:
                i, job = waiting.pop()
                pending[task.remote(job, reader_ref)] = i
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            try:
                results[i] = ray.get(done[0])
                bar.update(1)
            except ray.exceptions.RayTaskError as err:
                failure = failure or err
    if failure is not None:
        raise failure.cause from None
    return results  # type: ignore[return-value]


def _finish(
    manifest: Manifest, results: Sequence[ShardResult], skipped_by_index: Sequence[SkippedFile]
) -> Manifest:
    """The manifest with the shards, counts per split and class, and skipped files merged: those
    the index left out first, then the tasks', one entry per file and reason."""
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        per_class = counts.setdefault(r.entry.split, {})
        for label, n in sorted(r.labels.items()):
            name = manifest.classes[label]
            per_class[name] = per_class.get(name, 0) + n
    merged: dict[tuple[str, str], list[str]] = {}
    for s in [*skipped_by_index, *(s for r in results for s in r.skipped)]:
        merged.setdefault((s.path, s.reason), []).extend(s.sample_ids)
    skipped = tuple(SkippedFile(p, reason, tuple(ids)) for (p, reason), ids in merged.items())
    shards = tuple(r.entry for r in results)
    return dataclasses.replace(manifest, counts=counts, shards=shards, skipped=skipped)
