"""Binning of DVS events into T steps of dt, as the reference's N-MNIST pipeline (spec section 2.3).

The reference converts each recording once (MATLAB: `t_bin = ceil(ts / 600 us)`), then its loader
shifts every spike one step later and drops those at or beyond `END_TIME`. Together:

    step = ceil(t_us / dt_us) + 1, kept only if step < T

so an event at t = 0 lands at step 1, one at 0 < t <= dt at step 2, and with dt = 0.6 ms and T = 540
the window covers t <= 323.4 ms. Several events of one pixel and polarity in one step collapse into
one spike (the reference writes a set of (channel, bin) pairs).

Input index `p * W * H + x * H + y` for 0-based x, y and the file's polarity bit p (1 = ON), on a
sensor of (polarities, W, H) that the data set declares (`nmnist.FACTS.input_shape`, (2, 34, 34)):
for N-MNIST the reference's `(x - 1) * 34 + y` with 1-based coordinates, and its polarity-2 events
at +1156, written 0-based (`docs/shards.md`). Events outside the sensor are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EventBinning:
    """Parameters of the event binning; recorded in the manifest. (Saccade stabilisation, the
    reference's `stable` folder, is the N-MNIST reader's option: the events arrive stabilised.)"""

    T: int = 540
    dt_ms: float = 0.6

    def __post_init__(self) -> None:
        if self.T < 2:
            raise ValueError(f"EventBinning.T: got {self.T} (expected at least 2 steps)")
        if not (self.dt_ms > 0 and abs(self.dt_ms * 1000 - self.dt_us) < 1e-6):
            raise ValueError(
                f"EventBinning.dt_ms: got {self.dt_ms} (expected a positive whole number of "
                "microseconds, since event times are integer microseconds)"
            )

    @property
    def dt_us(self) -> int:
        return round(self.dt_ms * 1000)


def bin_events(
    events: np.ndarray, params: EventBinning, sensor: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One recording's spikes as `(times uint16, neurons uint32)`, sorted by time then neuron.

    `events` is a structured array with fields `x, y, p, t` (t in microseconds, p in {0, 1});
    `sensor` is `(polarities, width, height)`, the data set's input shape.
    """
    steps = -(-events["t"].astype(np.int64) // params.dt_us) + 1  # ceil(t / dt) + 1, exactly
    x, y, p = (events[f].astype(np.int64) for f in ("x", "y", "p"))
    n_pol, width, height = sensor
    keep = (
        (steps < params.T)
        & (x >= 0)
        & (x < width)
        & (y >= 0)
        & (y < height)
        & (p >= 0)
        & (p < n_pol)
    )
    neurons = p[keep] * (width * height) + x[keep] * height + y[keep]
    n_inputs = n_pol * width * height
    # One spike per (step, neuron); np.unique also sorts by step, then neuron.
    keys = np.unique(steps[keep] * n_inputs + neurons)
    return (keys // n_inputs).astype(np.uint16), (keys % n_inputs).astype(np.uint32)
