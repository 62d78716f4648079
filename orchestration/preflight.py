"""Everything a run can be refused for, checked on the driver before any Ray or MLflow call.

A config is checked at load (`schema`); what it must agree with outside itself is checked here:
the shards' manifest (T, input count, classes, encoder, splits, raw pixels for re-encoding), the
shards' digests, and an earlier run of the same `run.storage_path/run.name` that a rerun would
resume (its latest checkpoint whole, trained with the same network on the same classes). Refused
here, a bad rerun leaves the finished run's MLflow record as it was and starts no worker; inside a
worker it would reopen the run, mark it FAILED, and be retried by `FailureConfig` in vain.
`hm2bp train`, `run_local` and `hm2bp evaluate` (against its checkpoint) all check through here.
"""

from __future__ import annotations

from hm2bp.orchestration import checkpoint as ckpt
from hm2bp.orchestration.config import ExperimentConfig
from hm2bp.orchestration.schema import ConfigError, flatten, to_dict
from hm2bp.pipelines.manifest import Manifest, read_manifest
from hm2bp.pipelines.shards import ShardSource, verified_bytes
from tqdm.auto import tqdm


def preflight(config: ExperimentConfig) -> Manifest:
    """The manifest of a resolved config's shards, once the config agrees with them and with the
    run it would resume; raises `ConfigError` listing every disagreement, `CheckpointError` for a
    damaged checkpoint, `BadInputError` for a damaged shard."""
    manifest = read_manifest(config.data.shards)
    problems = manifest_problems(config, manifest)
    if problems:
        raise ConfigError(problems, f"config against the shards in {config.data.shards}")
    problems = resume_problems(config, manifest)
    if problems:
        raise ConfigError(problems, f"config against its earlier run in {config.run.folder}")
    check_shards(config, manifest)
    return manifest


def check_shards(config: ExperimentConfig, manifest: Manifest) -> None:
    """The digests of the shards the run trains and validates on (a damaged shard is one message
    here, where a worker would fail with Ray's tracebacks; workers check again as they read)."""
    source = ShardSource.of(config.data.shards)
    splits = {config.data.train_split, config.data.val_split}
    entries = [e for split in splits for e in manifest.entries(split, config.data.shards)]
    # A bar on a terminal only (disable=None): the MNIST shards take a while to hash.
    for entry in tqdm(entries, desc="verify shards", unit="shard", leave=False, disable=None):
        verified_bytes(source, entry, manifest)


def manifest_problems(config: ExperimentConfig, manifest: Manifest) -> list[str]:
    """What in `config` disagrees with the shards' `manifest`."""
    found = []
    if config.data.T != manifest.T:
        found.append(f"data.T: got {config.data.T} (the shards have T={manifest.T})")
    if config.data.encoder != manifest.encoder:
        found.append(
            f"data.encoder: got {config.data.encoder!r} (the shards were encoded with "
            f"{manifest.encoder!r})"
        )
    if config.network.n_inputs != manifest.n_inputs:
        found.append(
            f"network.input_shape: got {list(config.network.input_shape)} = "
            f"{config.network.n_inputs} inputs (the shards have input_shape "
            f"{list(manifest.input_shape)} = {manifest.n_inputs} inputs)"
        )
    if config.network.n_classes != len(manifest.classes):
        found.append(
            f"network.layers.{len(config.network.layers) - 1}.size: got "
            f"{config.network.n_classes} outputs (the shards have {len(manifest.classes)} classes)"
        )
    if config.data.reencode and not manifest.keep_pixels:
        found.append(
            "data.reencode: true, but the shards hold no raw pixels (convert with --keep-pixels)"
        )
    splits = {entry.split for entry in manifest.shards}
    for name in ("train_split", "val_split"):
        split = getattr(config.data, name)
        if split not in splits:
            found.append(
                f"data.{name}: got {split!r} (the shards have splits {', '.join(sorted(splits))})"
            )
    return found


def classes_problem(record: ckpt.RunRecord, manifest: Manifest) -> list[str]:
    """The classes of the shards, if they are not those a checkpoint was trained on."""
    if list(manifest.classes) == list(record.classes):
        return []
    return [
        f"classes: the shards have {list(manifest.classes)} (the checkpoint was trained on "
        f"{list(record.classes)})"
    ]


def resume_problems(config: ExperimentConfig, manifest: Manifest) -> list[str]:
    """What stops a rerun from resuming the run in `run.storage_path/run.name`: a network or
    classes other than its checkpoint's. Its latest checkpoint is verified (both digests)."""
    latest = ckpt.latest_checkpoint(config.run.folder)
    if latest is None:
        return []
    record = ckpt.load_record(ckpt.verify(latest))
    trained = flatten(record.config["network"], "network.")
    wanted = flatten(to_dict(config)["network"], "network.")
    found = [
        f"{key}: got {wanted.get(key)!r} (run {config.run.name!r} was trained with "
        f"{trained.get(key)!r}; expected the same network to resume, or another run.name for a "
        "new run)"
        for key in sorted(trained.keys() | wanted.keys())
        if trained.get(key) != wanted.get(key)
    ]
    return found + classes_problem(record, manifest)
