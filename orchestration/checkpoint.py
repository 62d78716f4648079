"""Training checkpoints: one file holding everything a rerun needs to continue exactly.

`checkpoint.pt` (torch.save of plain data) holds the model's weights, the optimizer (Adam's moments
and step counts, which the reference never resets, spec 4.9), the number of finished epochs, the
RNG states, the experiment config, the per-epoch metrics history (so the MLflow logger can backfill
after a restart), the last validation confusion matrix, boosting weights and where it was trained.
Weights are saved from the unwrapped model on the CPU, named `layers.<i>.weight`, so a checkpoint
trained with one backend on one device (Triton on a GPU) loads with another (reference on a CPU).

Every checkpoint is a folder `checkpoint_epoch_NNNN/` under `storage_path/name` (Ray Train names it
so under Ray; `run_local` writes it itself): the file is written under a temporary name and renamed,
so a crash never leaves a checkpoint that looks whole. Beside it, `checkpoint.sha256` holds the
digest of its bytes, written before it: torch's format checks no tensor byte (a flipped bit in a
weight loads silently), so a checkpoint is whole only with a digest that matches.

A run keeps two checkpoints: its latest (to resume) and its best, the one of the highest validation
accuracy (to evaluate and deploy); they are one folder when the last epoch is the best.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hm2bp.pipelines.checksums import sha256_bytes
from hm2bp.pipelines.storage import read_bytes, resolve, write_atomic

CHECKPOINT_FILE = "checkpoint.pt"
DIGEST_FILE = "checkpoint.sha256"
FORMAT = 1
STATE_KEYS = frozenset(
    {
        "epoch",
        "model",
        "optimizer",
        "rng",
        "config",
        "history",
        "confusion",
        "classes",
        "boosting",
        "trained_on",
    }
)
_FOLDER = re.compile(r"^checkpoint_epoch_(\d+)$")
SCORE = "val_accuracy"  # what makes a checkpoint a run's best: higher is better


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, foreign, or of another format."""


def folder_name(epoch: int) -> str:
    """The folder of the checkpoint taken after `epoch` finished epochs."""
    return f"checkpoint_epoch_{epoch:04d}"


def state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return buffer.getvalue()


def save_state(state: dict[str, Any], folder: str) -> str:
    """Write `state` atomically as `<folder>/checkpoint.pt` (folder: a local path or a URI)."""
    fs, path = resolve(folder)
    fs.create_dir(path, recursive=True)
    data = state_bytes(state)
    # The digest first: a checkpoint.pt that exists always has its digest beside it.
    write_atomic(fs, f"{path}/{DIGEST_FILE}", f"{sha256_bytes(data)}\n".encode())
    write_atomic(fs, f"{path}/{CHECKPOINT_FILE}", data)
    return f"{folder}/{CHECKPOINT_FILE}"


def load_state(location: str | Path) -> dict[str, Any]:
    """A checkpoint's state from its folder or its `checkpoint.pt`; tensors on the CPU."""
    text = str(location)
    fs, path = resolve(text)
    if not path.endswith(".pt"):
        path = f"{path}/{CHECKPOINT_FILE}"
    try:
        data = read_bytes(fs, path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no checkpoint (expected a checkpoint_epoch_NNNN folder written by "
            "`hm2bp train`, or its checkpoint.pt)"
        ) from None
    folder = path.rsplit("/", 1)[0]
    try:
        digest = read_bytes(fs, f"{folder}/{DIGEST_FILE}").decode(errors="replace").strip()
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no {DIGEST_FILE} beside it (expected the digest `hm2bp train` writes with "
            "every checkpoint; without it a damaged file cannot be told from a whole one)"
        ) from None
    if sha256_bytes(data) != digest:
        raise CheckpointError(
            f"{path}: sha256 {sha256_bytes(data)[:16]}... (expected {digest[:16]}... as "
            f"{DIGEST_FILE} records: the file changed after it was written; use another "
            "checkpoint_epoch_NNNN of the run)"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (and suggests weights_only=False: never)
        raise CheckpointError(
            f"{path}: whole (its digest matches) but unreadable by torch {torch.__version__} "
            f"({type(err).__name__}: {str(err).splitlines()[0]}; expected a checkpoint.pt that "
            "`hm2bp train` wrote with a compatible torch)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: checkpoint format {found!r} (expected {FORMAT})")
    missing = sorted(STATE_KEYS - set(state))
    if missing:
        raise CheckpointError(
            f"{path}: a checkpoint without {missing} (expected {sorted(STATE_KEYS)})"
        )
    return state


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
    import pyarrow.fs as pafs

    return fs.get_file_info(f"{folder}/{CHECKPOINT_FILE}").type == pafs.FileType.File


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
    epochs = best_epochs(load_state(latest)["history"])
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
