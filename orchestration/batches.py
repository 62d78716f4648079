"""From a batch of shard rows to the engine's input: dense spikes `[T, B, *input_shape]`.

Rows arrive as a pyarrow table (Ray Data's `batch_format="pyarrow"`, or a slice of the table a
local run reads itself). Usually the spikes are the stored ones (`decode_spikes`). For the
reference's CNN row (spec 2.2) a training batch is instead re-encoded from its raw `pixels`: the
reference's warp (`augment`) and fresh Bernoulli draws (`rate_encode_batch`) every epoch, with the
encoder parameters the manifest recorded; validation always uses the stored spikes, as the
reference's test set does.

The random stream of a re-encoded batch is `default_rng([seed, epoch, rank, step])`: it needs no
saved state to resume, and workers never draw the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hm2bp.orchestration.config import ExperimentConfig
from hm2bp.pipelines.augment import Augmentation, augment
from hm2bp.pipelines.decode import decode_pixels, decode_spikes
from hm2bp.pipelines.manifest import Manifest
from hm2bp.pipelines.rate_coding import rate_encode_batch


def columns(config: ExperimentConfig, train: bool) -> list[str]:
    """The shard columns a batch needs: no more is read from storage."""
    names = ["sample_id", "label"]
    return names + (["pixels"] if train and config.data.reencode else ["times", "neurons"])


@dataclass(frozen=True)
class Decoder:
    """How a run turns batches of shard rows into the engine's input on its device: the config
    says which columns and shape, the manifest how the spikes were stored or encoded."""

    config: ExperimentConfig
    manifest: Manifest
    device: torch.device

    def __call__(
        self, batch: Any, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(spikes uint8 [T, B, *network.input_shape], labels int64 [B])` on the device (a
        CNN's input is `(C, H, W)`); re-encoded from pixels when `rng` is given (training batches
        of a `data.reencode` config)."""
        spikes, labels = self._spikes(batch, rng)
        T, B = spikes.shape[:2]
        shaped = torch.from_numpy(spikes).reshape(T, B, *self.config.network.input_shape)
        return shaped.to(self.device, non_blocking=True), torch.from_numpy(labels).to(self.device)

    def _spikes(self, batch: Any, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        manifest = self.manifest
        if rng is None:
            return decode_spikes(batch, manifest.T, manifest.n_inputs)
        pixels = decode_pixels(batch, tuple(manifest.input_shape))
        images = augment(pixels, Augmentation(), rng) if self.config.data.augment else pixels
        spikes = rate_encode_batch(images, manifest.encoding(), rng)
        return spikes, np.asarray(batch.column("label").to_numpy(), dtype=np.int64)


def sample_ids(batch: Any) -> list[str]:
    return batch.column("sample_id").to_pylist()
