"""Rate (Bernoulli) coding of images, exactly as the reference (spec section 2.1).

Every pixel is an independent Bernoulli source with p = pixel / (5.5 * 255) per step, at steps
1..T-1; step 0 never spikes (the reference starts its loop at t = 1), and black pixels never spike.
A white pixel emits on average 72.5 spikes in T = 400. The rate per step does not depend on `dt_ms`,
which only records how long a step is taken to be (1 ms in the reference).

Two entry points share one implementation: `rate_encode_batch` draws dense spikes for a batch (what
a trainer uses to re-encode raw `pixels` with fresh draws every epoch, possibly after `augment`),
and `rate_encode` gives one sample's sparse events for a shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RateCoding:
    """Parameters of the reference rate coding; recorded in the manifest.

    `T` steps of `dt_ms` each; the spike probability per step is `pixel / (scale * 255)`.
    """

    T: int = 400
    dt_ms: float = 1.0
    scale: float = 5.5

    def __post_init__(self) -> None:
        if self.T < 2:
            raise ValueError(f"RateCoding.T: got {self.T} (expected at least 2 steps)")
        if not self.scale >= 1.0:
            raise ValueError(f"RateCoding.scale: got {self.scale} (expected >= 1, so p <= 1)")


def _draw(pixels: np.ndarray, params: RateCoding, rng: np.random.Generator):
    """The Bernoulli draws of the non-black pixels of `pixels [B, ...]`: `fired bool [T-1, K]`
    for steps 1..T-1, and the image `b [K]` and input `n [K]` of each of the K pixels (in
    row-major order). Black pixels (p = 0) never fire, so they take no draws (MNIST: ~80 %)."""
    flat = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
    b, n = np.nonzero(flat > 0)
    p = flat[b, n] / np.float32(params.scale * 255.0)
    return rng.random((params.T - 1, len(b)), dtype=np.float32) < p, b, n


def rate_encode_batch(
    pixels: np.ndarray, params: RateCoding, rng: np.random.Generator
) -> np.ndarray:
    """Dense spikes `uint8 [T, B, N]` for `pixels [B, ...]` (uint8, or float in [0, 255] after
    augmentation); N is the product of the trailing dimensions, row-major (`row * W + col`)."""
    fired, b, n = _draw(pixels, params, rng)
    spikes = np.zeros((params.T, len(pixels), math.prod(pixels.shape[1:])), dtype=np.uint8)
    spikes[1:, b, n] = fired
    return spikes


def rate_encode(
    pixels: np.ndarray, params: RateCoding, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One image's spikes as `(times uint16, neurons uint32)`, sorted by time then neuron: the
    same draws as `rate_encode_batch` of that image alone with the same stream."""
    fired, _, n = _draw(pixels[None], params, rng)
    step, k = np.nonzero(fired)  # C order: by step, then pixel (n ascends with k)
    return (step + 1).astype(np.uint16), n[k].astype(np.uint32)
