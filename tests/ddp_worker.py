"""One data-parallel worker for `test_ddp.py`, in its own module so that spawned processes can
import it by name: plain torch.distributed with gloo, one training step, weights saved to a file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from hm2bp.kernels.network import Network
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants
from torch.nn.parallel import DistributedDataParallel

LR = 0.05
SEED = 0


def spec() -> NetworkSpec:
    return NetworkSpec(
        input_shape=(1, 8, 8),
        layers=(
            LayerSpec("conv", NeuronConstants(threshold=1.0), size=2, kernel=3, init_range=0.5),
            LayerSpec("pool", NeuronConstants(threshold=1.0)),
            LayerSpec("fc", NeuronConstants(threshold=1.0), size=10),
            LayerSpec("output", NeuronConstants(threshold=1.0), size=3),
        ),
        reg_lambda=1.0,
        reg_beta=0.2,
    )


def data(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    spikes = (torch.rand(120, batch, 1, 8, 8, generator=gen) < 0.15).to(torch.uint8)
    return spikes, torch.arange(batch) % 3


def train_step(net: torch.nn.Module, spikes: torch.Tensor, labels: torch.Tensor) -> None:
    """The step every worker and the single-process reference run: SGD, so that the step shows
    gradient magnitudes (Adam's first step would move every weight by +-lr)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    out = net(spikes, labels)
    out.loss.backward()
    optimizer.step()


def worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        net = DistributedDataParallel(Network(spec(), seed=SEED, dtype=torch.float64))
        spikes, labels = data(2 * world_size)
        mine = slice(2 * rank, 2 * rank + 2)
        train_step(net, spikes[:, mine], labels[mine])
        weights = [p.detach().clone() for p in net.module.parameters()]
        torch.save(weights, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
