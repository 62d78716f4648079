"""The audio encoder: a 'cochlea' (mel, Lyon's model or gammatone) at the reference's frame rate,
then BSA as in spec 2.4, or rate coding.

BSA is compiled (numba); its oracles are the spec written out as Python loops and, bit for bit,
the vectorised numpy loop it replaced (`bsa_numpy`, kept here). The mel front end builds its
filterbank once per process; its oracle is the librosa call it replaced (`cochleagram_librosa`).
Every front end and coding must keep the network's shape (78 channels, one frame per 16 ms, values
in [0, 1]) and be recorded in, and rebuilt from, the manifest; `segments` then moves each spike to
the inputs of its part of the speech.
"""

import dataclasses
import importlib.util

import librosa
import numpy as np
import pytest
from hm2bp.pipelines.audio_coding import (
    AudioCoding,
    bsa_encode,
    bsa_kernel,
    cochleagram,
    encode_audio,
    encode_features,
    erb_space,
    speech_span,
)
from hm2bp.pipelines.encoders import encode, encoder_from_record, input_shape, params_record
from hm2bp.pipelines.registry import get_reader
from hm2bp.pipelines.seeding import sample_rng
from hm2bp.pipelines.source import AudioClip
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.test_gpu_bench import load_script


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


def bsa_numpy(signal, params):
    """`bsa_encode` as it was before it was compiled: sequential in time, vectorised over
    channels, every sum numpy's own. The compiled scan must give exactly its spikes."""
    kernel = bsa_kernel(params)
    n_channels, length = signal.shape
    positions = min(length, params.T - 1)
    s = np.zeros((n_channels, max(length, positions + len(kernel))))
    s[:, :length] = signal
    fired = np.zeros((positions, n_channels), dtype=bool)
    for i in range(positions):
        window = s[:, i : i + len(kernel)]
        gain = np.abs(window).sum(axis=1) - np.abs(window - kernel).sum(axis=1)
        fire = gain > params.bsa_threshold
        window[fire] -= kernel
        fired[i] = fire
    steps, channels = np.nonzero(fired)
    return (steps + 1).astype(np.uint16), channels.astype(np.uint32)


def cochleagram_librosa(clip, params):
    """`cochleagram` as it was before it kept the mel filterbank: librosa's melspectrogram."""
    y = np.asarray(clip.samples, dtype=np.float32)
    if clip.sample_rate != params.sample_rate:
        y = librosa.resample(y, orig_sr=clip.sample_rate, target_sr=params.sample_rate)
    power = librosa.feature.melspectrogram(
        y=y,
        sr=params.sample_rate,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        n_mels=params.n_channels,
        fmin=params.fmin_hz,
        fmax=params.fmax_hz,
        power=2.0,
    )
    if not power.max() > 1e-10:
        return np.zeros(power.shape, dtype=np.float32)
    db = librosa.power_to_db(power, ref=np.max, top_db=params.dynamic_range_db)
    return (1.0 + db / params.dynamic_range_db).astype(np.float32)


def assert_same_spikes(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape and np.array_equal(g, e)


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


# (channels, steps, T, kernel length, threshold, scale): odd sizes; T below, at and above the
# kernel's 24 steps; kernels short enough for numpy's one-by-one sum (< 8 terms), one block
# (<= 128) and split blocks (> 128); thresholds that never, rarely and often fire.
BSA_CASES = [
    (1, 1, 2, 24, 0.6, 0.6),
    (3, 37, 5, 24, 0.6, 0.6),
    (5, 23, 24, 24, 0.6, 1.0),
    (5, 29, 23, 24, 0.6, 1.0),
    (7, 25, 25, 24, 0.6, 0.6),
    (78, 301, 1000, 24, 0.6, 0.5),
    (78, 1203, 1000, 24, 0.6, 0.5),
    (11, 97, 40, 7, 0.1, 0.3),
    (9, 133, 150, 13, -0.2, 0.8),
    (4, 260, 300, 129, 0.6, 0.2),
    (6, 501, 700, 300, 5.0, 1.0),
    (2, 0, 10, 24, 0.6, 0.6),
]


@pytest.mark.parametrize("channels, steps, T, length, threshold, scale", BSA_CASES)
def test_compiled_bsa_is_the_numpy_loop_bit_for_bit(channels, steps, T, length, threshold, scale):
    params = AudioCoding(T=T, bsa_length=length, bsa_threshold=threshold, segments=1)
    rng = np.random.default_rng(channels * 1000 + steps)
    features = rng.random((channels, steps), dtype=np.float32) * np.float32(scale)
    # all zeros, all ones, random features, and random features with silent channels
    silent = features.copy()
    silent[::2] = 0
    for signal in (np.zeros_like(features), np.ones_like(features), features, silent):
        assert_same_spikes(bsa_encode(signal, params), bsa_numpy(signal, params))


@pytest.mark.parametrize("length", [5, 13, 24, 200])
def test_compiled_bsa_gains_are_numpys_to_the_last_bit(length):
    """BSA fires where the gain exceeds the threshold: with the threshold at numpy's gain and at
    the float just below it, a scan fires as the numpy loop did only if its gain is numpy's to the
    last bit. The windows spread over ten decades, where the order of the additions shows."""
    rng = np.random.default_rng(length)
    kernel = bsa_kernel(AudioCoding(bsa_length=length))
    order_shows = 0
    for _ in range(50):
        window = 10.0 ** rng.uniform(-9, 1, length)
        gain = np.abs(window).sum() - np.abs(window - kernel).sum()
        in_order = sum(np.abs(window).tolist()) - sum(np.abs(window - kernel).tolist())
        order_shows += gain != in_order
        for threshold in (gain, np.nextafter(gain, -np.inf)):
            params = AudioCoding(T=2, bsa_length=length, bsa_threshold=float(threshold), segments=1)
            expected = bsa_numpy(window[None], params)
            assert len(expected[0]) == (threshold < gain)
            assert_same_spikes(bsa_encode(window[None], params), expected)
    assert length < 8 or order_shows > 0  # below 8 terms numpy adds in order too


def test_bsa_rate_follows_the_signal_level():
    params = AudioCoding(T=2000)
    levels = [0.0, 0.05, 0.2, 0.5, 1.0]
    signal = np.repeat(np.array(levels)[:, None], 1000, axis=1)
    _, channels = bsa_encode(signal, params)
    per_step = np.bincount(channels, minlength=len(levels)) / 1000
    # below the kernel's reach nothing fires; above it, about one spike per unit of signal mass
    assert per_step[0] == per_step[1] == 0
    assert per_step[2:] == pytest.approx(levels[2:], rel=0.25)


def test_front_end_is_librosas_melspectrogram_bit_for_bit():
    params = AudioCoding()
    rng = np.random.default_rng(2)
    t = np.arange(9001) / 8000
    clips = [
        AudioClip(rng.normal(0, 0.1, 9001).astype(np.float32), 8000),  # resampled
        AudioClip(np.sin(2 * np.pi * 440 * t).astype(np.float32), 12500),  # not resampled
        AudioClip(rng.normal(0, 0.3, 513).astype(np.float32), 11025),  # one analysis window
        AudioClip(np.zeros(6000, np.float32), 16000),  # silence
    ]
    for clip in clips:
        got, expected = cochleagram(clip, params), cochleagram_librosa(clip, params)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    narrow = AudioCoding(n_channels=40, fmax_hz=4000.0)  # another filterbank, cached beside
    got, expected = cochleagram(clips[0], narrow), cochleagram_librosa(clips[0], narrow)
    assert got.shape[0] == 40 and np.array_equal(got, expected)


@pytest.mark.shared
def test_fsdd_spikes_are_those_of_the_numpy_encoder():
    """Real recordings, through the whole encoder: the same spikes as librosa's melspectrogram
    followed by the numpy BSA loop."""
    folder = shared_path("data", "fsdd", "recordings")
    reader = get_reader("wav", folder)
    refs = reader.index(folder).refs[::83]  # 31 recordings across digits and speakers
    params = AudioCoding(segments=1)  # the channels themselves (segments: their own test)
    for clip in reader.load(folder, refs):
        features = cochleagram_librosa(clip, params)
        held = np.repeat(features, params.hold_steps, axis=1) * params.bsa_gain
        assert_same_spikes(encode_audio(clip, params, None), bsa_numpy(held, params))


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
    times, neurons = encode_audio(AudioClip(noise, 12500), params, None)
    assert len(times) > 0 and times.max() < 300 and times.min() >= 1
    assert neurons.max() < params.n_inputs == 624
    assert np.all(np.diff(times.astype(int) * 624 + neurons) > 0)
    silent = encode_audio(AudioClip(np.zeros(6000, np.float32), 12500), params, None)
    assert len(silent[0]) == 0


def test_frame_and_step_must_span_whole_samples():
    assert AudioCoding().hop_length == 200
    with pytest.raises(ValueError, match="dt_ms"):
        AudioCoding(dt_ms=1.63)


FRONT_ENDS = [
    "mel",
    pytest.param(
        "lyon",
        marks=pytest.mark.skipif(
            not importlib.util.find_spec("lyon"), reason="the lyon package (extra `lyon`) is absent"
        ),
    ),
    "gammatone",
]


def tone(hz, seconds=1.0, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    return AudioClip((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_every_front_end_keeps_the_shape_range_and_frequency_order(front_end):
    params = AudioCoding(front_end=front_end)
    low, high = cochleagram(tone(300), params), cochleagram(tone(3000), params)
    # 1 s at 8 kHz, resampled to 12.5 kHz: 12500 / 200 hop + 1 centred frame, as mel's
    assert low.shape == high.shape == (78, 63) and low.dtype == np.float32
    assert low.min() >= 0 and low.max() == pytest.approx(1.0)
    assert low.mean(axis=1).argmax() < high.mean(axis=1).argmax()
    assert np.array_equal(cochleagram(tone(300), params), low)  # deterministic
    noise = AudioClip(np.random.default_rng(3).normal(0, 0.1, 4321).astype(np.float32), 11025)
    assert cochleagram(noise, params).shape[1] == cochleagram(noise, AudioCoding()).shape[1]
    assert not cochleagram(AudioClip(np.zeros(6000, np.float32), 12500), params).any()


def test_gammatone_centres_are_erb_spaced_within_the_band():
    centres = erb_space(50.0, 6250.0, 78)
    erb_rate = 21.4 * np.log10(1 + 0.00437 * centres)
    assert centres[0] == pytest.approx(50.0) and centres[-1] < 6250.0
    assert np.allclose(np.diff(erb_rate), erb_rate[1] - erb_rate[0])


def test_rate_coding_draws_the_features_as_probabilities():
    params = AudioCoding(T=2001, coding="rate", segments=1)
    levels = np.array([0.0, 0.05, 0.5, 1.0], dtype=np.float32)
    features = np.repeat(levels[:, None], 200, axis=1)  # 2000 steps once held
    times, channels = encode_features(features, params, np.random.default_rng(0))
    per_step = np.bincount(channels, minlength=4) / 2000
    assert per_step[0] == 0 and per_step[1:] == pytest.approx(levels[1:] * 0.5, rel=0.15)
    assert times.min() >= 1 and times.max() < 2001 and times.dtype == np.uint16
    assert np.all(np.diff(times.astype(int) * 4 + channels) > 0)  # by time, then neuron
    again = encode_features(features, params, np.random.default_rng(0))
    other = encode_features(features, params, np.random.default_rng(1))
    assert_same_spikes(again, (times, channels))
    assert not np.array_equal(other[0], times)
    short = encode_features(features, AudioCoding(T=300, coding="rate"), np.random.default_rng(0))
    assert short[0].max() < 300


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("coding", ["bsa", "rate"])
def test_the_manifest_records_front_end_and_coding(front_end, coding):
    params = AudioCoding(front_end=front_end, coding=coding)
    record = params_record(params)
    assert (record["front_end"], record["coding"]) == (front_end, coding)
    assert encoder_from_record("cochlea_bsa", record) == params
    # what the shards hold is what `encode` gives with the sample's stream
    clip = tone(440, 0.5)
    facts = get_reader("ti46").facts
    spikes = encode(clip, params, sample_rng(0, "a.wav"), facts)
    assert_same_spikes(spikes, encode_audio(clip, params, sample_rng(0, "a.wav")))
    assert len(spikes[0]) > 0 and spikes[1].max() < params.n_inputs


def test_a_manifest_from_before_the_options_reads_as_mel_bsa_and_the_reference_layout():
    old = params_record(AudioCoding())
    del old["front_end"], old["coding"], old["segments"]
    params = encoder_from_record("cochlea_bsa", old)
    assert (params.front_end, params.coding, params.segments) == ("mel", "bsa", 1)
    assert params == AudioCoding(segments=1)


def test_unknown_or_misfit_options_are_refused():
    with pytest.raises(ValueError, match="front_end: got 'bark'"):
        AudioCoding(front_end="bark")
    with pytest.raises(ValueError, match="coding: got 'poisson'"):
        AudioCoding(coding="poisson")
    with pytest.raises(ValueError, match="n_channels=64"):
        AudioCoding(front_end="lyon", n_channels=64)
    with pytest.raises(ValueError, match="bsa_gain: got 2"):
        AudioCoding(coding="rate", bsa_gain=2)


def test_segments_lay_the_clip_s_time_out_in_place():
    """Each spike keeps its step and moves to its part's block of inputs: channel c in part k of
    the coded steps is input k * channels + c, and the parts are equal."""
    rising = np.linspace(0.2, 1.0, 100, dtype=np.float32)
    # 1000 steps, all speech: the third channel holds every frame at `speech_level`
    features = np.stack([rising, rising[::-1], np.full(100, 0.6, np.float32)])
    flat = encode_features(
        features, AudioCoding(T=2001, n_channels=3, segments=1), np.random.default_rng(0)
    )
    params = AudioCoding(T=2001, n_channels=3, segments=4)
    times, neurons = encode_features(features, params, np.random.default_rng(0))
    assert params.n_inputs == 12 and input_shape(params, get_reader("ti46").facts) == (12,)
    assert np.array_equal(times, flat[0]) and neurons.dtype == np.uint32
    part = (times.astype(int) - 1) // 250
    assert np.array_equal(neurons, part * 3 + flat[1])
    assert set(part) == {0, 1, 2, 3} and np.all(np.diff(times.astype(int) * 12 + neurons) > 0)
    # a clip longer than T: the parts cover the T - 1 coded steps
    capped = encode_features(features, AudioCoding(T=501, n_channels=3, segments=4), None)
    assert np.array_equal(capped[1] // 3, (capped[0].astype(int) - 1) // 125)


def test_segments_divide_the_speech_not_the_silence_around_it():
    """A word of 30 frames between 40 frames of quiet on each side: the parts are thirds of the
    word's 300 steps (401..700), which reach `speech_level`; the quiet before and after, firing
    but below it, goes to the first and the last part. With `speech_level` 0 the parts are
    thirds of the whole clip."""
    word = np.random.default_rng(3).uniform(0.6, 1.0, (4, 30)).astype(np.float32)
    quiet = np.full((4, 40), 0.3, np.float32)
    features = np.concatenate([quiet, word, quiet], axis=1)  # 1100 steps
    params = AudioCoding(T=2001, n_channels=4, segments=3)
    times, neurons = encode_features(features, params, None)
    channels = encode_features(features, dataclasses.replace(params, segments=1), None)[1]
    t = times.astype(int)
    assert np.any(t <= 400) and np.any(t > 700)
    assert np.array_equal(neurons, np.clip((t - 401) * 3 // 300, 0, 2) * 4 + channels)
    whole = encode_features(features, dataclasses.replace(params, speech_level=0.0), None)
    assert np.array_equal(whole[1], (t - 1) * 3 // 1100 * 4 + channels)
    assert len(encode_features(np.zeros((4, 30), np.float32), params, None)[0]) == 0


def test_speech_level_out_of_range_is_refused():
    with pytest.raises(ValueError, match="speech_level: got 1.5"):
        AudioCoding(speech_level=1.5)


@pytest.mark.parametrize("segments", [0, 1000, 2.5])
def test_segments_out_of_range_are_refused(segments):
    with pytest.raises(ValueError, match=f"segments: got {segments}"):
        AudioCoding(segments=segments)


@pytest.mark.shared
def test_the_speech_readout_of_the_bench_counts_the_encoder_s_inputs():
    """`bench/speech_coding.py --readout speech` bins spikes of the 78 channels; its counts must
    be those of the default encoder's 624 inputs, so that its table speaks for the encoder."""
    bench = load_script("speech_coding")
    folder = shared_path("data", "fsdd", "recordings")
    corpus = bench.load("FSDD", "wav", folder, 125)  # 20 recordings across speakers and digits
    channels, layout = AudioCoding(segments=1), AudioCoding()
    for clip in corpus.clips:
        features = cochleagram(clip, channels)
        times, neurons = encode_features(features, channels, None)
        steps = min(features.shape[1] * channels.hold_steps, channels.T - 1)
        edges = bench.bin_edges(steps, speech_span(features, channels), channels.T, "speech")
        counts = bench.spike_bins(times, neurons, 78, edges).reshape(78, layout.segments)
        inputs = np.bincount(encode_features(features, layout, None)[1], minlength=624)
        assert np.array_equal(counts.T.ravel(), inputs)
