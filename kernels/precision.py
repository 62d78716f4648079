"""Full float32 for the forward currents: spikes are discontinuous in the current (spec 6.3).

TF32 keeps 10 mantissa bits, enough to move a neuron within ~1e-3 of its threshold to the other
side; the reference computes its currents in full float32 (cuBLAS GEMM, direct convolution).
torch's defaults differ by operator: cuBLAS matmuls are IEEE float32, but cuDNN convolutions use
TF32. So the forward computes its currents inside `ieee_float32()`, whatever the process-wide
setting; the backward only touches gradients and follows the process-wide setting.

Uses torch's `fp32_precision` settings (torch >= 2.9): mixing them with the legacy `allow_tf32`
flags makes torch raise when it reads them, so callers should set only the new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def ieee_float32() -> Iterator[None]:
    """IEEE float32 (no TF32) for cuBLAS matmuls and cuDNN convolutions inside the block; the
    previous settings are restored on exit."""
    matmul = torch.backends.cuda.matmul
    conv = torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = "ieee"
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved
