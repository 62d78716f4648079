"""The reference CNN's training-time image warp (spec section 2.2), on raw pixels.

A Simard-style displacement field per image: uniform noise in [-1, 1] per pixel, convolved with a 21
x 21 Gaussian of sigma 4 and multiplied by alpha = 3.4 (the elastic part), plus a random scaling
(+-12 %) and rotation (+-12 degrees) about the image centre; the image is resampled bilinearly at
the displaced positions, and positions outside the image read as black. A trainer applies it to the
raw `pixels` stored in the shards and re-encodes with `rate_encode_batch`, fresh each epoch.

Following the reference's `g_createGaussianKernel`, the Gaussian is *not* normalised to sum 1: its
weights are `exp(-r^2 / (2 sigma^2)) / (2 pi sigma)`, which makes the elastic displacement about
0.55 px (standard deviation) at the reference's settings. Deliberate differences from the reference,
whose quirks come from its batch layout: the horizontal and vertical noise, the two scale factors
and the angle are drawn independently per image (the reference reuses numbers across them, and with
batch 1 one warp serves a whole epoch); a neighbour outside the image contributes black to the
bilinear sum (the reference blacks out any output pixel with a neighbour outside, which also blanks
the last row and column); and the scale factors are symmetric (the reference clamps them to >= 0
when rotation is on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Warp parameters (reference defaults); a trainer records them beside the manifest's."""

    kernel_size: int = 21
    elastic_sigma: float = 4.0
    elastic_alpha: float = 3.4
    max_scale: float = 0.12
    max_rotation_deg: float = 12.0

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"Augmentation.kernel_size: got {self.kernel_size} (expected odd >= 1)"
            )


def _blur_matrix(size: int, params: Augmentation) -> np.ndarray:
    """`G [size, size]` such that `G @ U @ G.T` is the 2-D convolution of U with the reference's
    Gaussian, with zeros outside the image (the Gaussian is separable)."""
    mid = params.kernel_size // 2
    offset = np.arange(size)[None, :] - np.arange(size)[:, None]  # column minus row
    g = np.exp(-(offset**2) / (2 * params.elastic_sigma**2))
    g[np.abs(offset) > mid] = 0.0
    # The 2-D weights exp(-r^2/2s^2) / (2 pi s) split into two equal 1-D factors.
    return g / np.sqrt(2 * np.pi * params.elastic_sigma)


def displacement(shape: tuple[int, int, int], params: Augmentation, rng: np.random.Generator):
    """Source offsets `(dy, dx)`, each `float64 [B, H, W]` in pixels, for images of `shape`."""
    batch, height, width = shape
    noise = rng.uniform(-1.0, 1.0, size=(2, batch, height, width))
    gh, gw = _blur_matrix(height, params), _blur_matrix(width, params)
    dy, dx = params.elastic_alpha * (gh @ noise @ gw.T)
    scale_y, scale_x = rng.uniform(-params.max_scale, params.max_scale, size=(2, batch, 1, 1))
    angle = np.deg2rad(
        rng.uniform(-params.max_rotation_deg, params.max_rotation_deg, (batch, 1, 1))
    )
    row = np.arange(height)[:, None] - height // 2  # offsets from the centre, as the reference
    col = np.arange(width)[None, :] - width // 2
    cos, sin = np.cos(angle), np.sin(angle)
    # Source positions (row cos - col sin, col cos + row sin): a rotation about the centre.
    dy = dy + scale_y * row + row * (cos - 1) - col * sin
    dx = dx + scale_x * col + col * (cos - 1) + row * sin
    return dy, dx


def warp(pixels: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """`pixels [B, H, W]` resampled bilinearly at `(row + dy, col + dx)`; outside reads 0."""
    batch, height, width = pixels.shape
    src_y = np.arange(height)[:, None] + dy
    src_x = np.arange(width)[None, :] + dx
    y0, x0 = np.floor(src_y).astype(np.int64), np.floor(src_x).astype(np.int64)
    fy, fx = src_y - y0, src_x - x0
    b = np.arange(batch)[:, None, None]
    image = np.asarray(pixels, dtype=np.float32)
    out = np.zeros(pixels.shape, dtype=np.float64)
    for oy, ox, weight in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + oy, x0 + ox
        inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        values = image[b, np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]
        out += np.where(inside, weight * values, 0.0)
    return out.astype(np.float32)


def augment(pixels: np.ndarray, params: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Randomly warped copies `float32 [B, H, W]` in [0, 255] of `pixels [B, H, W]` (uint8)."""
    dy, dx = displacement(pixels.shape, params, rng)
    return warp(pixels, dy, dx)
