"""Training checkpoints: one folder holding everything a rerun needs to continue exactly.

A checkpoint is a `TrainingState`: the run's `RunRecord` (the experiment config, the per-epoch
metrics history, so that the MLflow logger can backfill after a restart, the nodes of each epoch,
the last validation confusion matrix, the classes, where it was trained and the replicas' weight
digests) and the tensors: the weights, the optimizer (Adam's moments and step counts, which the
reference never resets, spec 4.9), the RNG state and the boosting weights. The record is
`record.json` and the tensors `checkpoint.pt` (torch.save of plain data, loaded with
`weights_only`), so that the driver reads a run's history and config without loading its weights.
Weights are saved from the unwrapped model on the CPU, named `layers.<i>.weight`, so a checkpoint
trained with one backend on one device (Triton on a GPU) loads with another (reference on a CPU).

Every checkpoint is a folder `checkpoint_epoch_NNNN/` under `storage_path/name` (Ray Train names it
so under Ray; `run_local` writes it itself). `checkpoint.sha256` holds the digests of both files
(`sha256sum` lines), written first; `checkpoint.pt` is written last, each file under a temporary
name and renamed, so a folder with a `checkpoint.pt` is whole, and a crash never leaves a
checkpoint that looks whole. torch's format checks no tensor byte (a flipped bit in a weight loads
silently), so a file is used only with a digest that matches.

Checkpoints of format 1 (hm2bp before the typed state: one `checkpoint.pt` holding the record too,
its digest one bare line) still load, so earlier runs resume and evaluate.

A run keeps two checkpoints: its latest (to resume) and its best, the one of the highest validation
accuracy (to evaluate and deploy); they are one folder when the last epoch is the best.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.storage import read_bytes, resolve, write_atomic

CHECKPOINT_FILE = "checkpoint.pt"
RECORD_FILE = "record.json"
DIGEST_FILE = "checkpoint.sha256"
FORMAT = 2  # 1: one checkpoint.pt holding the record too (hm2bp before the typed state)
TENSOR_KEYS = frozenset({"model", "optimizer", "rng", "boosting"})
FORMAT_ONE_KEYS = TENSOR_KEYS | {"config", "history", "confusion", "classes", "trained_on"}
_FOLDER = re.compile(r"^checkpoint_epoch_(\d+)$")
SCORE = "val_accuracy"  # what makes a checkpoint a run's best: higher is better


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, foreign, or of another format."""


@dataclass
class RunRecord:
    """What a run has done, as plain data (`record.json`): enough to resume its bookkeeping, log
    it, compare a rerun's config with it, or evaluate it, without its tensors."""

    config: dict[str, Any]  # the experiment config (`config.to_dict`)
    classes: list[str]
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics
    nodes: list[list[str]] = field(default_factory=list)  # per epoch, each rank's node
    confusion: list[list[int]] = field(default_factory=list)  # last validation's, [true][pred]
    trained_on: dict[str, str] = field(default_factory=dict)  # device and backend
    replica_digests: list[str] = field(default_factory=list)  # each rank's weights sha256

    @property
    def epochs(self) -> int:
        """Finished epochs."""
        return len(self.history)


@dataclass
class TrainingState:
    """A checkpoint: the record and the tensors to resume from (all on the CPU)."""

    record: RunRecord
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor  # torch's CPU generator state
    boosting: dict[str, torch.Tensor] | None = None

    def save(self, folder: str) -> str:
        """Write the checkpoint into `folder` (a local path or a URI); returns the folder."""
        fs, path = resolve(folder)
        fs.create_dir(path, recursive=True)
        files = {
            RECORD_FILE: json.dumps({"format": FORMAT, **asdict(self.record)}).encode(),
            CHECKPOINT_FILE: _torch_bytes(
                {
                    "model": self.model,
                    "optimizer": self.optimizer,
                    "rng": self.rng,
                    "boosting": self.boosting,
                }  # fmt: skip
            ),
        }
        digests = "".join(f"{sha256_bytes(data)}  {name}\n" for name, data in files.items())
        write_atomic(fs, f"{path}/{DIGEST_FILE}", digests.encode())
        for name, data in files.items():  # checkpoint.pt last: it marks the folder whole
            write_atomic(fs, f"{path}/{name}", data)
        return folder

    @classmethod
    def load(cls, location: str | Path) -> TrainingState:
        """The checkpoint in `location` (its folder, or its `checkpoint.pt`), verified."""
        folder = checkpoint_folder(location)
        fs, path = resolve(folder)
        if _format_one(fs, path):
            return _from_format_one(_torch_state(fs, path, FORMAT_ONE_KEYS), path)
        record = load_record(folder)
        tensors = _torch_state(fs, path, TENSOR_KEYS)
        return cls(record, tensors["model"], tensors["optimizer"], tensors["rng"],
                   tensors["boosting"])  # fmt: skip


def _from_format_one(state: dict[str, Any], folder: str) -> TrainingState:
    """A checkpoint of format 1 (one `checkpoint.pt` holding the record too, one bare digest
    line), as hm2bp wrote before the typed state: runs trained then still resume and evaluate."""
    if state.get("format") != 1:
        raise CheckpointError(
            f"{folder}/{CHECKPOINT_FILE}: checkpoint format {state.get('format')!r} beside a "
            "one-line digest (expected 1, which kept the record inside checkpoint.pt)"
        )
    history = list(state["history"])
    record = RunRecord(
        config=state["config"],
        classes=list(state["classes"]),
        history=history,
        nodes=list(state.get("nodes", [[] for _ in history])),  # recorded from late format 1
        confusion=state["confusion"],
        trained_on=dict(state["trained_on"]),
        replica_digests=list(state.get("replica_digests", [])),
    )
    return TrainingState(
        record, state["model"], state["optimizer"], state["rng"]["torch"], state["boosting"]
    )


def folder_name(epoch: int) -> str:
    """The folder of the checkpoint taken after `epoch` finished epochs."""
    return f"checkpoint_epoch_{epoch:04d}"


def checkpoint_folder(location: str | Path) -> str:
    """A checkpoint's folder from the folder itself or one of its files."""
    text = str(location).rstrip("/")
    name = text.rsplit("/", 1)[-1]
    return text.rsplit("/", 1)[0] if name in (CHECKPOINT_FILE, RECORD_FILE) else text


def load_record(location: str | Path) -> RunRecord:
    """The `RunRecord` of the checkpoint in `location`, verified, without reading its tensors
    (but for format 1, which kept it among them)."""
    fs, path = resolve(checkpoint_folder(location))
    if _format_one(fs, path):
        return TrainingState.load(path).record
    data = _verified(fs, path, RECORD_FILE)
    try:
        plain = json.loads(data)
        if plain.pop("format") != FORMAT:
            raise ValueError
        return RunRecord(**plain)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckpointError(
            f"{path}/{RECORD_FILE}: not the record of an hm2bp checkpoint of format {FORMAT}"
        ) from None


def verify(location: str | Path) -> str:
    """The checkpoint folder of `location` once both its files match their digests (what a
    driver checks before a run resumes from it, without loading anything)."""
    folder = checkpoint_folder(location)
    fs, path = resolve(folder)
    names = (CHECKPOINT_FILE,) if _format_one(fs, path) else (RECORD_FILE, CHECKPOINT_FILE)
    for name in names:
        _verified(fs, path, name)
    return folder


def _torch_state(fs, folder: str, keys: Collection[str]) -> dict[str, Any]:
    """The verified `checkpoint.pt` of `folder`, loaded (tensors only), holding `keys`."""
    data = _verified(fs, folder, CHECKPOINT_FILE)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (and suggests weights_only=False: never)
        raise CheckpointError(
            f"{folder}/{CHECKPOINT_FILE}: whole (its digest matches) but unreadable by torch "
            f"{torch.__version__} ({type(err).__name__}: {str(err).splitlines()[0]}; "
            "expected a checkpoint.pt that `hm2bp train` wrote with a compatible torch)"
        ) from err
    if not isinstance(state, dict) or not set(keys) <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{folder}/{CHECKPOINT_FILE}: holds {found} (expected {sorted(keys)} of an hm2bp "
            "checkpoint)"
        )
    return state


def _torch_bytes(data: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(data), buffer)
    return buffer.getvalue()


def _verified(fs, folder: str, name: str) -> bytes:
    """The bytes of `folder/name`, refused unless they match `checkpoint.sha256`'s line."""
    try:
        data = read_bytes(fs, f"{folder}/{name}")
    except FileNotFoundError:
        if not any(_exists(fs, f"{folder}/{n}") for n in (RECORD_FILE, CHECKPOINT_FILE)):
            raise FileNotFoundError(
                f"{folder}: no checkpoint (expected a checkpoint_epoch_NNNN folder written by "
                "`hm2bp train`, or its checkpoint.pt)"
            ) from None
        raise FileNotFoundError(
            f"{folder}/{name}: no such file (expected the file each hm2bp checkpoint folder holds)"
        ) from None
    digests = _digests(fs, folder, name)
    if name not in digests:
        raise CheckpointError(f"{folder}/{DIGEST_FILE}: no digest of {name} (expected one)")
    if sha256_bytes(data) != digests[name]:
        raise CheckpointError(
            f"{folder}/{name}: sha256 {sha256_bytes(data)[:16]}... (expected "
            f"{digests[name][:16]}... as {DIGEST_FILE} records: the file changed after it was "
            "written; use another checkpoint_epoch_NNNN of the run)"
        )
    return data


def _digest_lines(fs, folder: str) -> list[str] | None:
    """The lines of `checkpoint.sha256`, or None where there is none."""
    try:
        return read_bytes(fs, f"{folder}/{DIGEST_FILE}").decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None


def _one_bare_line(lines: list[str] | None) -> bool:
    """Whether digest lines are format 1's: one bare sha256 (of checkpoint.pt, which then held
    the record too)."""
    return lines is not None and len(lines) == 1 and "  " not in lines[0]


def _format_one(fs, folder: str) -> bool:
    """Whether `folder` holds a format-1 checkpoint."""
    return _one_bare_line(_digest_lines(fs, folder))


def _digests(fs, folder: str, name: str) -> dict[str, str]:
    """`{file: sha256}` from `checkpoint.sha256` (`sha256sum` lines; format 1: one bare line, of
    checkpoint.pt); refused without it, naming `name`, the file it would vouch for."""
    lines = _digest_lines(fs, folder)
    if lines is None:
        raise CheckpointError(
            f"{folder}/{name}: no {DIGEST_FILE} beside it (expected the digests `hm2bp train` "
            "writes with every checkpoint; without them a damaged file cannot be told from a "
            "whole one)"
        )
    if _one_bare_line(lines):
        return {CHECKPOINT_FILE: lines[0].strip()}
    return {n: d for d, _, n in (line.partition("  ") for line in lines)}


def _exists(fs, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.File


def latest_checkpoint(run_folder: str) -> str | None:
    """The newest complete `checkpoint_epoch_NNNN` folder under `run_folder`, if any."""
    import pyarrow.fs as pafs

    fs, path = resolve(run_folder)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    found = []
    for info in infos:
        match = _FOLDER.match(info.base_name)
        if info.type == pafs.FileType.Directory and match and _complete(fs, info.path):
            found.append((int(match.group(1)), info.base_name))
    if not found:
        return None
    return f"{run_folder.rstrip('/')}/{max(found)[1]}"


def _complete(fs, folder: str) -> bool:
    """Whether a checkpoint folder holds its checkpoint file (written last, by rename)."""
    return _exists(fs, f"{folder}/{CHECKPOINT_FILE}")


def best_epochs(history: Sequence[Mapping[str, float]]) -> int:
    """The finished epochs of a run's best checkpoint: the epoch of the highest `SCORE`, the later
    one among equals (the one Ray Train's scored `CheckpointConfig` keeps)."""
    scores = [epoch[SCORE] for epoch in history]
    top = max(scores)
    return max(i for i, score in enumerate(scores) if score == top) + 1


def best_and_latest(run_folder: str) -> tuple[str, str]:
    """`(best, latest)` checkpoint folders of a run folder (`storage_path/name`), the best found
    from the latest's history; raises `FileNotFoundError` naming what is missing."""
    latest = latest_checkpoint(run_folder)
    if latest is None:
        raise FileNotFoundError(
            f"{run_folder}: no checkpoint_epoch_NNNN folder (expected the run folder "
            "`run.storage_path/run.name` of a run that finished an epoch)"
        )
    epochs = best_epochs(load_record(latest).history)
    best = f"{run_folder.rstrip('/')}/{folder_name(epochs)}"
    if not _complete(*resolve(best)):
        raise FileNotFoundError(
            f"{best}: the run's best checkpoint (after epoch {epochs}) is gone (runs trained "
            "before hm2bp kept the best checkpoint kept only the last two); its latest is "
            f"{latest}"
        )
    return best, latest


def prune(run_folder: str, keep: Collection[int]) -> None:
    """Delete every checkpoint folder but those after `keep` epochs (local runs: the latest and
    the best, as Ray Train keeps them)."""
    import pyarrow.fs as pafs

    fs, path = resolve(run_folder)
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        match = _FOLDER.match(info.base_name)
        if match and int(match.group(1)) not in keep:
            fs.delete_dir(info.path)
