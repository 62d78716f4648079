"""Readers of the reference's golden-vector files (formats: `shared/golden/README.md`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_sparse_raster(path: Path, n: int, steps: int) -> np.ndarray:
    """`[T, n]` 0/1 from "neuron<TAB>time" lines between a leading and a trailing "-1 -1"."""
    raster = np.zeros((steps, n), dtype=np.uint8)
    lines = path.read_text().split("\n")
    assert lines[0].split() == ["-1", "-1"], f"{path}: no leading '-1 -1'"
    for line in lines[1:]:
        neuron, time = (int(token) for token in line.split())
        if neuron == -1:
            break
        raster[time, neuron] = 1
    return raster


def read_dense_raster(path: Path, channels: int, height: int, width: int, steps: int):
    """`[T, C, H, W]` 0/1 from one line per channel of T*H*W tokens in [t][row*W + col] order."""
    lines = [line for line in path.read_text().split("\n") if line.strip()]
    assert len(lines) == channels, f"{path}: {len(lines)} lines, expected {channels}"
    per_channel = [np.array(line.split(), dtype=np.float64) >= 1 for line in lines]
    raster = np.stack([c.reshape(steps, height, width) for c in per_channel], axis=1)
    return raster.astype(np.uint8)


def read_conv_weights(path: Path, shape: tuple[int, int, int, int]) -> np.ndarray:
    """W[out][in][p][q] from one line of floats in C order."""
    return np.array(path.read_text().split(), dtype=np.float64).reshape(shape)


def read_fc_weights(path: Path, n_out: int, n_in: int) -> np.ndarray:
    """W[post][pre] from "idx<TAB>pre<TAB>post<TAB>weight" lines (index after the last _)."""
    weights = np.zeros((n_out, n_in))
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        _, pre, post, value = line.split()
        weights[int(post.rsplit("_", 1)[1]), int(pre.rsplit("_", 1)[1])] += float(value)
    return weights
