"""Checkpoints: atomic, digested, found newest first, the best and latest kept, loadable on the
CPU."""

import pytest
import torch
from hm2bp.orchestration import checkpoint as ckpt


def state(epoch):
    return {**dict.fromkeys(ckpt.STATE_KEYS), "epoch": epoch, "model": torch.full((2,), epoch)}


def test_save_load_latest_and_prune(tmp_path):
    run = str(tmp_path / "run")
    for epoch in (1, 2, 3):
        ckpt.save_state(state(epoch), f"{run}/{ckpt.folder_name(epoch)}")
    (tmp_path / "run" / "checkpoint_epoch_0009").mkdir()  # no checkpoint.pt: not complete
    (tmp_path / "run" / "checkpoint_epoch_0003" / ".checkpoint.pt.tmp-x").write_bytes(b"half")
    ckpt.save_state(state(4), f"{run}/{ckpt.folder_name(4)}")
    (tmp_path / "run" / "checkpoint_epoch_0004" / "checkpoint.pt").unlink()  # cut after the digest
    latest = ckpt.latest_checkpoint(run)
    assert latest == f"{run}/checkpoint_epoch_0003"
    loaded = ckpt.load_state(latest)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"], torch.full((2,), 3))
    assert ckpt.load_state(f"{latest}/checkpoint.pt")["epoch"] == 3
    ckpt.prune(run, keep={1, 3})
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint_epoch_0001", "checkpoint_epoch_0003"]


def test_the_best_is_the_later_of_equal_scores_and_kept_beside_the_latest(tmp_path):
    accuracies = [0.2, 0.6, 0.5, 0.6, 0.4]
    history = [{"val_accuracy": a} for a in accuracies]
    assert ckpt.best_epochs(history) == 4  # 0.6 after epochs 2 and 4: the later, as Ray keeps
    assert ckpt.best_epochs(history[:3]) == 2
    run = str(tmp_path / "run")
    for epoch in range(1, 6):
        ckpt.save_state(
            {**state(epoch), "history": history[:epoch]}, f"{run}/{ckpt.folder_name(epoch)}"
        )
    ckpt.prune(run, keep={5, ckpt.best_epochs(history)})
    assert ckpt.best_and_latest(run) == (
        f"{run}/checkpoint_epoch_0004",
        f"{run}/checkpoint_epoch_0005",
    )
    ckpt.prune(run, keep={5})  # a run of an older hm2bp that kept the last two only
    with pytest.raises(
        FileNotFoundError,
        match="checkpoint_epoch_0004: the run's best checkpoint .after epoch 4. is gone",
    ):
        ckpt.best_and_latest(run)
    with pytest.raises(
        FileNotFoundError, match="no checkpoint_epoch_NNNN folder .expected the run folder"
    ):
        ckpt.best_and_latest(str(tmp_path))


def test_missing_checkpoint_names_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint .expected a checkpoint_epoch_NNNN"):
        ckpt.load_state(tmp_path)
    assert ckpt.latest_checkpoint(str(tmp_path / "nothing")) is None


def damage(path, how):
    data = path.read_bytes()
    if how == "flip":
        middle = len(data) // 2
        return path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    if how == "truncate":
        return path.write_bytes(data[: len(data) // 3])
    return path.write_bytes(b"not a checkpoint at all")


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, how):
    """torch loads a flipped weight byte silently: the digest beside the file catches it."""
    folder = tmp_path / "checkpoint_epoch_0001"
    ckpt.save_state(state(1), str(folder))
    damage(folder / "checkpoint.pt", how)
    with pytest.raises(ckpt.CheckpointError, match=f"{folder}/checkpoint.pt: sha256 .* changed"):
        ckpt.load_state(folder)


def test_a_foreign_file_with_a_matching_digest_is_refused_without_torchs_advice(tmp_path):
    folder = tmp_path / "checkpoint_epoch_0001"
    ckpt.save_state(state(1), str(folder))
    torch.save({"format": 1, "epoch": 1}, folder / "checkpoint.pt")  # another tool's file
    data = (folder / "checkpoint.pt").read_bytes()
    (folder / ckpt.DIGEST_FILE).write_text(ckpt.sha256_bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="a checkpoint without .'boosting', 'classes'"):
        ckpt.load_state(folder)
    (folder / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    (folder / ckpt.DIGEST_FILE).write_text(ckpt.sha256_bytes(b"\x80\x02garbage"))
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.load_state(folder)
    assert "unreadable by torch" in str(caught.value)
    assert "weights_only=False" not in str(caught.value)
    (folder / ckpt.DIGEST_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint.sha256 beside it"):
        ckpt.load_state(folder)


def test_a_checkpoint_without_its_digest_is_found_and_refused_loudly(tmp_path):
    """Not skipped: a run would silently start again from epoch 0 over it."""
    run = str(tmp_path / "run")
    ckpt.save_state(state(2), f"{run}/{ckpt.folder_name(2)}")
    (tmp_path / "run" / "checkpoint_epoch_0002" / ckpt.DIGEST_FILE).unlink()
    assert ckpt.latest_checkpoint(run) == f"{run}/checkpoint_epoch_0002"
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint.sha256 beside it"):
        ckpt.load_state(ckpt.latest_checkpoint(run))
