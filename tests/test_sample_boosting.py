"""Boosting by sample id across workers (spec 4.10): two gloo workers that each saw half of an
epoch end it with the same weights as one worker that saw all of it."""

from __future__ import annotations

import math

import torch
import torch.multiprocessing as mp
from hm2bp.kernels.boosting import Boosting
from hm2bp.tests.boosting_worker import IDS, epoch, worker
from hm2bp.tests.test_ddp import free_port


def test_one_worker_raises_the_weights_of_its_wrong_samples():
    boosting = Boosting(sorted(IDS), n_classes=3)
    epoch(boosting, range(len(IDS)))
    weights = boosting.weights(IDS)
    # Each class has one wrong sample: error 1/3 (classes 0, 1) or 1/2 (class 2), rate 1/20.
    expected = torch.ones(8, dtype=torch.float64)
    expected[[1, 4]] = math.exp(1 / 3 / 20)
    expected[7] = math.exp(1 / 2 / 20)
    torch.testing.assert_close(weights, expected)
    assert boosting.votes == ([], [], [])  # forgotten once the epoch is over


def test_two_workers_share_their_votes(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = Boosting(sorted(IDS), n_classes=3)
    epoch(single, range(len(IDS)))
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), single.weights(IDS))
