"""Rate coding follows the reference (spec 2.1): p = pixel / (5.5 * 255) per step, steps 1..T-1."""

import numpy as np
import pytest
from hm2bp.pipelines.rate_coding import RateCoding, rate_encode, rate_encode_batch
from hm2bp.pipelines.seeding import sample_rng


def test_white_pixel_rate_matches_the_reference():
    # 72.5 spikes per white pixel in T = 400 (spec 2.1): p = 1/5.5 over the 399 steps 1..399.
    white = np.full((1, 50, 40), 255, dtype=np.uint8)
    spikes = rate_encode_batch(white, RateCoding(), np.random.default_rng(0))
    per_pixel = spikes.sum(axis=0)[0]
    assert spikes.shape == (400, 1, 2000) and spikes.dtype == np.uint8
    assert per_pixel.mean() == pytest.approx(399 / 5.5, rel=0.01)


def test_no_spike_at_step_zero_and_none_from_black_pixels():
    image = np.zeros((1, 4, 4), dtype=np.uint8)
    image[0, 1, 2] = 255
    spikes = rate_encode_batch(image, RateCoding(T=300), np.random.default_rng(1))
    assert spikes[0].sum() == 0
    assert spikes.sum() == spikes[:, 0, 1 * 4 + 2].sum() > 0  # row-major index row * W + col


def test_sparse_and_dense_encodings_agree_and_are_sorted():
    image = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    params = RateCoding(T=50)
    times, neurons = rate_encode(image, params, sample_rng(7, "img#3"))
    dense = rate_encode_batch(image[None], params, sample_rng(7, "img#3"))[:, 0]
    assert times.dtype == np.uint16 and neurons.dtype == np.uint32
    assert np.array_equal(np.argwhere(dense), np.stack([times, neurons], axis=1))
    assert np.all(np.diff(times.astype(int) * 784 + neurons) > 0)


def test_per_sample_streams_are_reproducible_and_distinct():
    image = np.full((8, 8), 200, dtype=np.uint8)
    a = rate_encode(image, RateCoding(), sample_rng(0, "a"))
    again = rate_encode(image, RateCoding(), sample_rng(0, "a"))
    other = rate_encode(image, RateCoding(), sample_rng(0, "b"))
    reseeded = rate_encode(image, RateCoding(), sample_rng(1, "a"))
    assert all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    assert not np.array_equal(a[1], other[1]) and not np.array_equal(a[1], reseeded[1])


def test_float_pixels_from_augmentation_are_accepted():
    pixels = np.full((2, 3, 3), 127.5, dtype=np.float32)
    spikes = rate_encode_batch(pixels, RateCoding(T=2000), np.random.default_rng(3))
    assert spikes[1:].mean() == pytest.approx(0.5 / 5.5, rel=0.05)


@pytest.mark.parametrize("bad", [{"T": 1}, {"scale": 0.5}])
def test_bad_parameters_name_the_field(bad):
    with pytest.raises(ValueError, match=f"RateCoding.{next(iter(bad))}"):
        RateCoding(**bad)
