"""Reused output arrays for the CPU backend's kernels.

Every training step allocates the same few large arrays (currents, rasters, K, `[T, B, N]` each,
tens of MB at B = 32). Fresh large allocations are mmapped and every page faults on first touch,
which on the development machines cost more than the kernels that fill them (about 100 ms of a
250 ms step at B = 32). The pool hands out an array again once nothing refers to it any more (the
tensors made from it by `torch.from_numpy` hold a reference until they are freed), so a step
reuses the previous step's pages. Arrays of a shape that has not been asked for in the last
`FORGET_AFTER` requests are released, so a shape used once (a last short batch, validation) does
not stay resident.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays come from numpy directly
FORGET_AFTER = 256  # requests after which the free arrays of an unused shape are released


class ArrayPool:
    """`zeros` and `empty` like numpy's, reusing unreferenced arrays of the same shape and dtype."""

    def __init__(self) -> None:
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._last_used: dict[tuple, int] = {}
        self._requests = 0
        self._lock = threading.Lock()

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array, reused = self._take(shape, dtype)
        if reused:
            array.fill(0)
        return array

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._take(shape, dtype)[0]

    def _take(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, bool]:
        dtype = np.dtype(dtype)
        if int(np.prod(shape)) * dtype.itemsize < MIN_BYTES:
            return np.zeros(shape, dtype), False
        key = (tuple(shape), dtype.str)
        with self._lock:
            self._requests += 1
            self._last_used[key] = self._requests
            self._forget_unused()
            arrays = self._arrays.setdefault(key, [])
            for array in arrays:
                # References: the list, this loop variable and getrefcount's argument.
                if sys.getrefcount(array) == 3:
                    return array, True
            array = np.zeros(shape, dtype)
            arrays.append(array)
            return array, False

    def _forget_unused(self) -> None:
        for key, last in list(self._last_used.items()):
            if self._requests - last > FORGET_AFTER:
                kept = [a for a in self._arrays.pop(key, []) if sys.getrefcount(a) > 3]
                if kept:
                    self._arrays[key] = kept
                else:
                    del self._last_used[key]


POOL = ArrayPool()
