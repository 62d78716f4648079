"""Event binning follows the reference (spec 2.3): step = ceil(t / dt) + 1 < T, one spike per
(pixel, polarity, step), input index p * 1156 + x * 34 + y."""

import numpy as np
import pytest
from hm2bp.pipelines.event_binning import EventBinning, bin_events
from hm2bp.pipelines.nmnist import FACTS

DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("p", "<i8"), ("t", "<i8")])

SENSOR = FACTS.input_shape  # (polarity, x, y): the N-MNIST ATIS crop


def events(*rows):
    return np.array(list(rows), dtype=DTYPE)


def test_steps_follow_ceil_plus_one_and_drop_at_T():
    ev = events(
        (0, 0, 0, 0), (0, 1, 0, 600), (0, 2, 0, 601), (0, 3, 0, 322_800), (0, 4, 0, 323_400)
    )
    times, neurons = bin_events(ev, EventBinning(), SENSOR)
    # t=0 -> 1; t=600 -> 2; t=601 -> 3; t=322800 -> 539 (kept); t=323400 -> 540 = T (dropped)
    assert times.tolist() == [1, 2, 3, 539]
    assert neurons.tolist() == [0, 1, 2, 3]


def test_index_is_polarity_then_x_then_y():
    ev = events((3, 5, 1, 10), (33, 33, 0, 10), (33, 33, 1, 10))
    _, neurons = bin_events(ev, EventBinning(), SENSOR)
    assert neurons.tolist() == sorted([1 * 1156 + 3 * 34 + 5, 33 * 34 + 33, 1156 + 33 * 34 + 33])


def test_repeats_in_one_bin_collapse_and_output_is_sorted():
    ev = events((1, 1, 1, 700), (1, 1, 1, 1200), (1, 1, 0, 700), (2, 0, 0, 5), (1, 1, 1, 1201))
    times, neurons = bin_events(ev, EventBinning(), SENSOR)
    assert list(zip(times.tolist(), neurons.tolist(), strict=True)) == [
        (2, 68),
        (3, 35),
        (3, 1156 + 35),
        (4, 1156 + 35),
    ]
    assert times.dtype == np.uint16 and neurons.dtype == np.uint32


def test_events_outside_the_sensor_are_dropped():
    ev = events((-1, 0, 0, 10), (34, 0, 0, 10), (0, 34, 0, 10), (0, 0, 2, 10), (0, 0, 0, 10))
    times, neurons = bin_events(ev, EventBinning(), SENSOR)
    assert neurons.tolist() == [0]


def test_other_bin_widths_use_exact_integer_microseconds():
    ev = events((0, 0, 0, 1000), (0, 0, 0, 1001))
    times, _ = bin_events(ev, EventBinning(T=100, dt_ms=1.0), SENSOR)
    assert times.tolist() == [2, 3]
    with pytest.raises(ValueError, match="dt_ms"):
        EventBinning(dt_ms=0.0005)
