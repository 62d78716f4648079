"""The audio encoder: a mel 'cochlea' at the reference's frame rate, then BSA as in spec 2.4."""

import numpy as np
import pytest
from hm2bp.pipelines.audio_coding import (
    AudioCoding,
    bsa_encode,
    bsa_kernel,
    cochleagram,
    encode_audio,
)
from hm2bp.pipelines.source import AudioClip


def bsa_by_the_spec(signal, params):
    """Spec 2.4 written out with Python loops, one channel and position at a time."""
    k = bsa_kernel(params)
    spikes = []
    for c, row in enumerate(signal):
        s = np.concatenate([row, np.zeros(len(k))]).astype(np.float64)
        for i in range(len(row)):
            w = s[i : i + len(k)]
            if np.abs(w - k).sum() < np.abs(w).sum() - params.bsa_threshold:
                s[i : i + len(k)] -= k
                if i + 1 < params.T:
                    spikes.append((i + 1, c))
    return sorted(spikes)


def test_kernel_is_the_reference_fir():
    k = bsa_kernel(AudioCoding())
    i = np.arange(24)
    assert k.shape == (24,) and k.sum() == pytest.approx(1.0)
    assert np.allclose(k / k[12], np.exp(-((i - 12) ** 2) / 25))


def test_bsa_matches_the_spec_loop():
    params = AudioCoding(T=150)
    signal = np.random.default_rng(0).random((5, 200)) * 0.6
    times, channels = bsa_encode(signal, params)
    assert list(zip(times.tolist(), channels.tolist(), strict=True)) == bsa_by_the_spec(
        signal, params
    )


def test_bsa_rate_follows_the_signal_level():
    params = AudioCoding(T=2000)
    levels = [0.0, 0.05, 0.2, 0.5, 1.0]
    signal = np.repeat(np.array(levels)[:, None], 1000, axis=1)
    _, channels = bsa_encode(signal, params)
    per_step = np.bincount(channels, minlength=len(levels)) / 1000
    # below the kernel's reach nothing fires; above it, about one spike per unit of signal mass
    assert per_step[0] == per_step[1] == 0
    assert per_step[2:] == pytest.approx(levels[2:], rel=0.25)


def test_tone_excites_the_channel_of_its_frequency():
    params = AudioCoding()
    t = np.arange(8000) / 8000
    low = cochleagram(AudioClip(np.sin(2 * np.pi * 300 * t).astype(np.float32), 8000), params)
    high = cochleagram(AudioClip(np.sin(2 * np.pi * 3000 * t).astype(np.float32), 8000), params)
    # 1 s at 8 kHz, resampled to 12.5 kHz: 12500 / 200 hop + 1 centred frame
    assert low.shape == (78, 63) and low.min() >= 0 and low.max() == pytest.approx(1.0)
    assert low.mean(axis=1).argmax() < high.mean(axis=1).argmax()


def test_spikes_are_sorted_within_T_and_silence_is_silent():
    params = AudioCoding(T=300)
    noise = np.random.default_rng(1).normal(0, 0.1, 12500).astype(np.float32)
    times, neurons = encode_audio(AudioClip(noise, 12500), params)
    assert len(times) > 0 and times.max() < 300 and times.min() >= 1 and neurons.max() < 78
    assert np.all(np.diff(times.astype(int) * 78 + neurons) > 0)
    silent = encode_audio(AudioClip(np.zeros(6000, np.float32), 12500), params)
    assert len(silent[0]) == 0


def test_frame_and_step_must_span_whole_samples():
    assert AudioCoding().hop_length == 200
    with pytest.raises(ValueError, match="dt_ms"):
        AudioCoding(dt_ms=1.63)
