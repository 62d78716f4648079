"""The reference CNN's warp (spec 2.2) on raw pixels."""

import numpy as np
import pytest
from hm2bp.pipelines.augment import Augmentation, augment, displacement, warp

NONE = Augmentation(elastic_alpha=0.0, max_scale=0.0, max_rotation_deg=0.0)


def digit():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 6:22, 12:16] = 255
    return image


def test_no_distortion_is_the_identity():
    out = augment(digit(), NONE, np.random.default_rng(0))
    assert out.dtype == np.float32 and np.array_equal(out, digit().astype(np.float32))


def test_displacement_samples_bilinearly_and_reads_black_outside():
    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    dx = np.full((1, 3, 4), 0.5)
    out = warp(image, np.zeros_like(dx), dx)
    assert np.allclose(out[0, :, :3], (image[0, :, :3] + image[0, :, 1:]) / 2)
    assert np.allclose(out[0, :, 3], image[0, :, 3] / 2)  # the right neighbour is outside: black


def test_rotation_turns_about_the_centre():
    params = Augmentation(elastic_alpha=0.0, max_scale=0.0, max_rotation_deg=90.0)
    dy, dx = displacement((200, 28, 28), params, np.random.default_rng(1))
    # a pure rotation keeps the distance of every pixel from the centre
    row, col = np.mgrid[0:28, 0:28] - 14
    r_src = np.hypot(row + dy, col + dx)
    assert np.allclose(r_src, np.hypot(row, col)[None])


def test_reference_settings_warp_a_little_and_keep_the_range():
    rng = np.random.default_rng(2)
    images = np.repeat(digit(), 64, axis=0)
    dy, dx = displacement(images.shape, Augmentation(max_scale=0.0, max_rotation_deg=0.0), rng)
    # the elastic part alone: about 0.55 px standard deviation (see augment.py)
    assert np.std(dx) == pytest.approx(0.55, rel=0.25)
    out = augment(images, Augmentation(), rng)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out[0], out[1])  # every image gets its own field
    assert abs(out.sum() - images.sum()) / images.sum() < 0.2


def test_same_stream_same_warp():
    a = augment(digit(), Augmentation(), np.random.default_rng(3))
    b = augment(digit(), Augmentation(), np.random.default_rng(3))
    assert np.array_equal(a, b)
