"""The reference schedule (spec 4.9) and boosting weights (spec 4.10)."""

from __future__ import annotations

import math

import pytest
import torch
from hm2bp.kernels.boosting import Boosting
from hm2bp.kernels.schedule import build_optimizer, reference_lr, set_lr


def test_mlp_schedule_shares_epochs_zero_and_one():
    assert [reference_lr(1e-3, e) for e in (0, 1)] == [1e-3, 1e-3]
    assert reference_lr(1e-3, 2) == pytest.approx(7.0711e-4, rel=1e-4)
    assert reference_lr(1e-3, 199) == pytest.approx(7.09e-5, rel=1e-3)


def test_cnn_schedule_is_shifted_by_one_epoch():
    assert reference_lr(1e-3, 0, "cnn") == 1e-3
    assert reference_lr(1e-3, 1, "cnn") == pytest.approx(7.0711e-4, rel=1e-4)


def test_schedule_refuses_bad_values():
    with pytest.raises(ValueError, match="variant"):
        reference_lr(1e-3, 0, "rnn")
    with pytest.raises(ValueError, match="epoch"):
        reference_lr(1e-3, -1)


def test_optimizer_is_the_reference_adam():
    net = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(net, lr=2e-3)
    group = optimizer.param_groups[0]
    assert (group["betas"], group["eps"], group["lr"]) == ((0.9, 0.999), 1e-8, 2e-3)
    set_lr(optimizer, 5e-4)
    assert optimizer.param_groups[0]["lr"] == 5e-4


def test_boosting_raises_misclassified_weights_by_class_error():
    ids = [f"s{i}" for i in range(6)]
    boost = Boosting(ids, n_classes=2)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    predictions = torch.tensor([0, 1, 0, 0, 1, 1])  # one of four class-0 samples wrong
    boost.record(ids[:3], labels[:3], predictions[:3])
    boost.record(ids[3:], labels[3:], predictions[3:])
    boost.end_epoch()
    w = boost.weights(ids)
    assert w[1].item() == pytest.approx(math.exp(0.25 / 20))
    assert torch.equal(w[[0, 2, 3, 4, 5]], torch.ones(5, dtype=torch.float64))
    assert boost.votes == ([], [], [])  # forgotten once the epoch is over
    boost.end_epoch()  # no votes recorded: nothing changes
    assert boost.weights(["s1"]).item() == pytest.approx(math.exp(0.25 / 20))
    restored = Boosting(ids, 2)
    restored.load_state_dict(boost.state_dict())
    assert torch.equal(restored.weights(ids), w)


def test_a_sample_voted_twice_counts_once_with_its_last_vote():
    ids = ["a", "b"]
    twice, once = Boosting(ids, n_classes=1), Boosting(ids, n_classes=1)
    twice.record(["a", "b"], torch.tensor([0, 0]), torch.tensor([0, 0]))
    twice.record(["a"], torch.tensor([0]), torch.tensor([1]))
    once.record(["b", "a"], torch.tensor([0, 0]), torch.tensor([0, 1]))
    twice.end_epoch()
    once.end_epoch()
    assert torch.equal(twice.weights(ids), once.weights(ids))
    assert twice.weights(["a"]).item() == pytest.approx(math.exp(0.5 / 20))


def test_boosting_refuses_unknown_ids_and_duplicates():
    with pytest.raises(ValueError, match="sample id 's3': not in the training set"):
        Boosting(["s0", "s1"], 2).weights(["s3"])
    with pytest.raises(ValueError, match="sample_ids: found an id twice"):
        Boosting(["s0", "s0"], 2)
