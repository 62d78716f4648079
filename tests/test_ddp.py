"""DDP sees the HM2-BP gradients: two gloo processes training one step on different samples end
with identical weights, equal to one process training on the union (batch-averaged gradient)."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp
from hm2bp.kernels.network import Network
from hm2bp.tests.ddp_worker import SEED, data, spec, train_step, worker
from hm2bp.tests.local_cluster import free_port


def test_two_gloo_workers_equal_one_process_on_the_union(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")

    single = Network(spec(), seed=SEED, dtype=torch.float64)
    initial = [p.detach().clone() for p in single.parameters()]
    spikes, labels = data(4)
    train_step(single, spikes, labels)

    for a, b, ref, start in zip(rank0, rank1, single.parameters(), initial, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, ref.detach(), rtol=1e-12, atol=1e-14)
        assert (a - start).abs().max() > 1e-4  # the step did move the weights

    # Each worker's own gradient differs from the average: without DDP's all-reduce the
    # workers' weights would differ from each other and from the union.
    alone = Network(spec(), seed=SEED, dtype=torch.float64)
    train_step(alone, spikes[:, :2], labels[:2])
    assert max((a - p).abs().max() for a, p in zip(rank0, alone.parameters(), strict=True)) > 1e-6
