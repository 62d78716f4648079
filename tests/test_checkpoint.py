"""Checkpoints: typed, atomic, digested, found newest first, the best and latest kept, the record
readable without the tensors, loadable on the CPU."""

import json

import pytest
import torch
from hm2bp.orchestration import checkpoint as ckpt


def state(epoch, history=None):
    history = history or [{"val_accuracy": 0.1 * e} for e in range(epoch)]
    record = ckpt.RunRecord(config={"seed": 0}, classes=["a", "b"], history=history)
    return ckpt.TrainingState(record, {"w": torch.full((2,), epoch)}, {}, torch.get_rng_state())


def test_save_load_latest_and_prune(tmp_path):
    run = str(tmp_path / "run")
    for epoch in (1, 2, 3):
        state(epoch).save(f"{run}/{ckpt.folder_name(epoch)}")
    (tmp_path / "run" / "checkpoint_epoch_0009").mkdir()  # no checkpoint.pt: not complete
    (tmp_path / "run" / "checkpoint_epoch_0003" / ".checkpoint.pt.tmp-x").write_bytes(b"half")
    state(4).save(f"{run}/{ckpt.folder_name(4)}")
    (tmp_path / "run" / "checkpoint_epoch_0004" / "checkpoint.pt").unlink()  # cut after the record
    latest = ckpt.latest_checkpoint(run)
    assert latest == f"{run}/checkpoint_epoch_0003"
    loaded = ckpt.TrainingState.load(latest)
    assert loaded.record == state(3).record and torch.equal(loaded.model["w"], torch.full((2,), 3))
    assert torch.equal(loaded.rng, torch.get_rng_state()) and loaded.boosting is None
    assert ckpt.TrainingState.load(f"{latest}/checkpoint.pt").record.epochs == 3
    assert ckpt.load_record(f"{latest}/record.json") == loaded.record
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
        state(epoch, history[:epoch]).save(f"{run}/{ckpt.folder_name(epoch)}")
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
        ckpt.TrainingState.load(tmp_path)
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
@pytest.mark.parametrize("name", ["checkpoint.pt", "record.json"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, how, name):
    """torch loads a flipped weight byte silently: the digests beside the files catch it."""
    folder = tmp_path / "checkpoint_epoch_0001"
    state(1).save(str(folder))
    damage(folder / name, how)
    with pytest.raises(ckpt.CheckpointError, match=f"{folder}/{name}: sha256 .* changed"):
        ckpt.TrainingState.load(folder)
    with pytest.raises(ckpt.CheckpointError, match=f"{folder}/{name}: sha256 .* changed"):
        ckpt.verify(folder)  # the driver's check before a run resumes


def redigest(folder, name, data):
    """Write `data` as `folder/name` with a matching digest line, as a foreign tool might."""
    (folder / name).write_bytes(data)
    lines = (folder / ckpt.DIGEST_FILE).read_text().splitlines()
    kept = [line for line in lines if not line.endswith(f"  {name}")]
    digests = [*kept, f"{ckpt.sha256_bytes(data)}  {name}"]
    (folder / ckpt.DIGEST_FILE).write_text("\n".join(digests) + "\n")


def test_a_foreign_file_with_a_matching_digest_is_refused_without_torchs_advice(tmp_path):
    folder = tmp_path / "checkpoint_epoch_0001"
    state(1).save(str(folder))
    torch.save({"epoch": 1}, folder / "other.pt")  # another tool's file
    redigest(folder, "checkpoint.pt", (folder / "other.pt").read_bytes())
    with pytest.raises(ckpt.CheckpointError, match=r"holds \['epoch'\] \(expected \['boosting'"):
        ckpt.TrainingState.load(folder)
    redigest(folder, "checkpoint.pt", b"\x80\x02garbage")
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.TrainingState.load(folder)
    assert "unreadable by torch" in str(caught.value)
    assert "weights_only=False" not in str(caught.value)
    redigest(folder, "record.json", json.dumps({"format": 1, "history": []}).encode())
    with pytest.raises(ckpt.CheckpointError, match="not the record of an hm2bp checkpoint of form"):
        ckpt.load_record(folder)
    (folder / ckpt.DIGEST_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint.sha256 beside it"):
        ckpt.TrainingState.load(folder)


def write_format_one(folder, epoch):
    """A checkpoint as hm2bp wrote it before the typed state: one torch.save of the whole state,
    its sha256 on one bare line."""
    import io

    history = [{"val_accuracy": 0.1 * e} for e in range(epoch)]
    state = {"format": 1, "epoch": epoch, "model": {"w": torch.full((2,), epoch)},
             "optimizer": {}, "rng": {"torch": torch.get_rng_state()}, "config": {"seed": 0},
             "history": history, "confusion": [[1]], "classes": ["a", "b"], "boosting": None,
             "trained_on": {"device": "cpu", "backend": "cpu"}}  # fmt: skip
    buffer = io.BytesIO()
    torch.save(state, buffer)
    folder.mkdir(parents=True)
    (folder / ckpt.DIGEST_FILE).write_text(ckpt.sha256_bytes(buffer.getvalue()) + "\n")
    (folder / "checkpoint.pt").write_bytes(buffer.getvalue())
    return history


def test_a_checkpoint_of_format_one_still_loads(tmp_path):
    """Runs trained before the typed state resume and evaluate: the record comes from inside
    checkpoint.pt, nodes and replica digests empty where they were not recorded yet."""
    folder = tmp_path / "run" / "checkpoint_epoch_0002"
    history = write_format_one(folder, 2)
    state = ckpt.TrainingState.load(folder)
    assert state.record.history == history and state.record.nodes == [[], []]
    assert state.record.trained_on == {"device": "cpu", "backend": "cpu"}
    assert torch.equal(state.model["w"], torch.full((2,), 2)) and state.boosting is None
    assert ckpt.load_record(folder) == state.record and ckpt.verify(folder) == str(folder)
    assert ckpt.best_and_latest(str(tmp_path / "run")) == (str(folder), str(folder))
    damage(folder / "checkpoint.pt", "flip")
    with pytest.raises(ckpt.CheckpointError, match="checkpoint.pt: sha256 .* changed"):
        ckpt.load_record(folder)


def test_a_checkpoint_without_its_digest_is_found_and_refused_loudly(tmp_path):
    """Not skipped: a run would silently start again from epoch 0 over it."""
    run = str(tmp_path / "run")
    state(2).save(f"{run}/{ckpt.folder_name(2)}")
    (tmp_path / "run" / "checkpoint_epoch_0002" / ckpt.DIGEST_FILE).unlink()
    assert ckpt.latest_checkpoint(run) == f"{run}/checkpoint_epoch_0002"
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint.sha256 beside it"):
        ckpt.TrainingState.load(ckpt.latest_checkpoint(run))
