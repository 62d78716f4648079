"""Checkpoints: atomic, found newest first, pruned, loadable on the CPU."""

import torch
from hm2bp.orchestration import checkpoint as ckpt


def test_save_load_latest_and_prune(tmp_path):
    run = str(tmp_path / "run")
    for epoch in (1, 2, 3):
        ckpt.save_state({"epoch": epoch, "w": torch.full((2,), float(epoch))}, f"{run}/"
                        f"{ckpt.folder_name(epoch)}")  # fmt: skip
    (tmp_path / "run" / "checkpoint_epoch_0009").mkdir()  # no checkpoint.pt: not complete
    (tmp_path / "run" / "checkpoint_epoch_0003" / ".checkpoint.pt.tmp-x").write_bytes(b"half")
    latest = ckpt.latest_checkpoint(run)
    assert latest == f"{run}/checkpoint_epoch_0003"
    state = ckpt.load_state(latest)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.full((2,), 3.0))
    assert ckpt.load_state(f"{latest}/checkpoint.pt")["epoch"] == 3
    ckpt.remove_older(run, keep=2)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint_epoch_0003", "checkpoint_epoch_0009"]


def test_missing_checkpoint_names_what_was_expected(tmp_path):
    try:
        ckpt.load_state(tmp_path)
    except FileNotFoundError as err:
        assert "no checkpoint (expected a checkpoint_epoch_NNNN folder" in str(err)
    else:
        raise AssertionError("a missing checkpoint must raise")
    assert ckpt.latest_checkpoint(str(tmp_path / "nothing")) is None
