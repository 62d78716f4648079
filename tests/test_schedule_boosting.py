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
    boost = Boosting(n_samples=6, n_classes=2)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    predictions = torch.tensor([0, 1, 0, 0, 1, 1])  # one of four class-0 samples wrong
    boost.record(torch.arange(3), labels[:3], predictions[:3])
    boost.record(torch.arange(3, 6), labels[3:], predictions[3:])
    boost.end_epoch()
    w = boost.weights(torch.arange(6))
    assert w[1].item() == pytest.approx(math.exp(0.25 / 20))
    assert torch.equal(w[[0, 2, 3, 4, 5]], torch.ones(5, dtype=torch.float64))
    boost.end_epoch()  # no votes recorded: nothing changes
    assert boost.weights(torch.tensor([1])).item() == pytest.approx(math.exp(0.25 / 20))
    restored = Boosting(6, 2)
    restored.load_state_dict(boost.state_dict())
    assert torch.equal(restored.weights(torch.arange(6)), w)


def test_boosting_refuses_bad_indices():
    with pytest.raises(ValueError, match="indices"):
        Boosting(3, 2).weights(torch.tensor([3]))
