"""Audio to spikes: a cochlear-like filterbank, then Ben's Spiker Algorithm (spec section 2.4) or
rate coding.

The reference fed TI46 through Lyon's passive ear model (78 channels at 12.5 kHz, decimated by 200,
i.e. one frame every 16 ms), held each frame for 10 steps and encoded every channel with BSA. Every
front end here keeps that shape: resample to 12.5 kHz, `n_channels` channels ordered from low to
high frequency, one frame per hop of 200 samples (62.5 per second; frame t centred on sample
t * hop, so a clip of n samples has 1 + n // hop frames), in [0, 1] with the clip's peak at 1.
`front_end` picks the filterbank; the energy ones (`mel`, `gammatone`) give power in dB relative to
the clip's loudest channel and frame, floored `dynamic_range_db` below it and scaled to [0, 1]:

- `mel` (the default): librosa's 78-band mel filterbank (50 Hz to 6.25 kHz) on an STFT with a
  512-sample window; the per-clip reference stands in for Lyon's automatic gain control.
- `lyon`: Lyon's passive ear model itself (the `lyon` package, a port of Slaney's Auditory Toolbox
  `LyonPassiveEar`: ear Q 8, step 0.25, which gives 78 channels at 12.5 kHz, with its AGC and
  decimation filter), decimated by the hop; its output, an AGC-compressed firing rate, is divided
  by the clip's peak, linear as the reference fed it (which scaled it by 2000 instead).
- `gammatone`: 4th-order gammatone filters (`scipy.signal.gammatone`) centred at `n_channels`
  frequencies evenly spaced on the ERB-rate scale from `fmin_hz` up to `fmax_hz`, power as the
  mean square of each filter's output over the frame.

Each frame is held `hold_steps` steps of `dt_ms` (10 x 1.6 ms = one 16 ms hop), so the neuron index
is the channel and the step is physical time: step = 1.6 ms of audio. `coding` picks how the held
features, times `bsa_gain`, become spikes: `bsa` (below; the default) or `rate`, a Bernoulli draw
per channel and step with that product as its probability, from the sample's own random stream; a
spike drawn at position i goes to step i + 1 < T, as BSA's do.

BSA then runs per channel: FIR kernel k_i ~ exp(-(i - 12)^2 / 25), i = 0..23, normalised to sum 1;
at each position i, a spike if sum|s - k| < sum|s| - 0.6 over the window s[i:i+24] (zeros past the
end), and then the kernel is subtracted from s; the spike goes to step i + 1 and is kept if < T. The
reference scaled Lyon's outputs by 2000; our features are in [0, 1], so `bsa_gain` scales them
instead. Since every spike removes one unit of signal mass, a steady signal a fires about a spikes
per step (BSA overshoots by 10-20 %) once a exceeds about 0.1, the kernel's reach: with the default
gain 0.5, a channel at the clip's peak level fires about 0.6 times per step (about 370 spikes/s),
and channels more than about 48 dB below the peak stay silent. On FSDD and the TI46 stand-in this
gives 0.1-0.25 spikes per channel and step.

`segments` lays time out in place, for networks that read their class from spike counts over the
whole sample (spec 1.4; HM2-BP's errors are on those counts, spec 4.1): with `segments` = K > 1, the
speech in the clip is cut into K equal parts and a spike of channel c in part k goes to input neuron
k * n_channels + c, so the order of the sounds becomes which neurons fire. The speech spans the
frames from the first to the last whose loudest channel reaches `speech_level` (`speech_span`);
spikes of the silence before and after go to the first and the last part. K = 1 is the reference's
78 inputs (spec 2.4); the default, 8, gives 624. The spike times are unchanged. Measured with a
linear classifier on the counts (docs/reproduction.md): order-free counts keep about what a log-mel
summary does; 8 parts of the speech keep 26 points more on FSDD and 25 on TI46-synth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from hm2bp.pipelines.source import AudioClip

FrontEnd = Literal["mel", "lyon", "gammatone"]
Coding = Literal["bsa", "rate"]
CODINGS: tuple[Coding, ...] = ("bsa", "rate")
LYON_SHAPE = (12500, 78)  # (sample_rate, n_channels): the only shape Lyon's model has here


@dataclass(frozen=True)
class AudioCoding:
    """Front-end, coding and layout parameters; recorded in the manifest. A manifest written
    before `front_end`, `coding` and `segments` existed reads back as `mel`, `bsa` and 1, what it
    was encoded with (`encoders.RECORDED_BEFORE`). The defaults are what keeps the most class
    information and trains best (docs/reproduction.md, `bench/speech_coding.py`): mel (equal to
    gammatone, above Lyon's model, and the fastest), BSA (above rate coding), and 8 segments
    (HM2-BP, 624-100-10 against 78-100-10 on FSDD's speaker folds: 62.6 % against 39.0 %).
    """

    T: int = 1000
    dt_ms: float = 1.6
    hold_steps: int = 10
    sample_rate: int = 12500
    n_channels: int = 78
    n_fft: int = 512
    fmin_hz: float = 50.0
    fmax_hz: float = 6250.0
    dynamic_range_db: float = 60.0
    bsa_length: int = 24
    bsa_width: float = 25.0
    bsa_threshold: float = 0.6
    bsa_gain: float = 0.5
    front_end: FrontEnd = "mel"
    coding: Coding = "bsa"
    segments: int = 8
    speech_level: float = 0.6

    def __post_init__(self) -> None:
        if self.front_end not in FRONT_ENDS:
            raise ValueError(
                f"AudioCoding.front_end: got {self.front_end!r} (expected one of "
                f"{', '.join(FRONT_ENDS)})"
            )
        if self.coding not in CODINGS:
            raise ValueError(
                f"AudioCoding.coding: got {self.coding!r} (expected one of {', '.join(CODINGS)})"
            )
        if self.front_end == "lyon" and (self.sample_rate, self.n_channels) != LYON_SHAPE:
            raise ValueError(
                f"AudioCoding: got front_end 'lyon' with sample_rate={self.sample_rate}, "
                f"n_channels={self.n_channels} (expected {LYON_SHAPE[0]} Hz and "
                f"{LYON_SHAPE[1]} channels, the channels of Lyon's model at that rate)"
            )
        if self.coding == "rate" and not 0 < self.bsa_gain <= 1:
            raise ValueError(
                f"AudioCoding.bsa_gain: got {self.bsa_gain} with coding 'rate' (expected a "
                "spike probability for features at 1, in (0, 1])"
            )
        if not (isinstance(self.segments, int) and 1 <= self.segments < self.T):
            raise ValueError(
                f"AudioCoding.segments: got {self.segments!r} (expected an int from 1, the "
                f"reference's layout, to T - 1 = {self.T - 1})"
            )
        if not 0 <= self.speech_level <= 1:
            raise ValueError(
                f"AudioCoding.speech_level: got {self.speech_level} (expected a feature level in "
                "[0, 1]; 0 takes the whole clip)"
            )
        hop = self.sample_rate * self.dt_ms * self.hold_steps / 1000
        if self.T < 2 or self.hold_steps < 1 or abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
            raise ValueError(
                f"AudioCoding: got T={self.T}, dt_ms={self.dt_ms}, hold_steps={self.hold_steps} at "
                f"{self.sample_rate} Hz (expected T >= 2 and dt_ms * hold_steps spanning a whole "
                "number of samples)"
            )

    @property
    def n_inputs(self) -> int:
        """Input neurons the spikes index into: every channel once per segment."""
        return self.n_channels * self.segments

    @property
    def hop_length(self) -> int:
        """Samples per frame: 200 at 12.5 kHz with the defaults (the reference's decimation)."""
        return round(self.sample_rate * self.dt_ms * self.hold_steps / 1000)


def cochleagram(clip: AudioClip, params: AudioCoding) -> np.ndarray:
    """The front end's features `float32 [channels, frames]` in [0, 1], one frame per hop
    (16 ms), the clip's peak at 1: `params.front_end`'s."""
    import librosa  # lazy: its first use compiles numba code; image and event paths never pay it

    y = np.asarray(clip.samples, dtype=np.float32)
    if clip.sample_rate != params.sample_rate:
        y = librosa.resample(y, orig_sr=clip.sample_rate, target_sr=params.sample_rate)
    return FRONT_ENDS[params.front_end](y, params).astype(np.float32)


def db_scale(power: np.ndarray, params: AudioCoding) -> np.ndarray:
    """Power in dB below its peak, floored `dynamic_range_db` below, scaled to [0, 1]; digital
    silence (no energy) is all zeros, so it fires no spikes."""
    import librosa

    if not power.max() > 1e-10:
        return np.zeros(power.shape)
    db = librosa.power_to_db(power, ref=np.max, top_db=params.dynamic_range_db)  # [-range, 0]
    return 1.0 + db / params.dynamic_range_db


def mel_features(y: np.ndarray, params: AudioCoding) -> np.ndarray:
    """Mel band power of `y` at `params.sample_rate`, `db_scale`d: `[channels, frames]`."""
    import librosa

    # `librosa.feature.melspectrogram(power=2.0)` step by step, with its filterbank built once per
    # process (`mel_filterbank`) instead of once per clip, a third of the front end's time.
    spectrum = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=params.hop_length)) ** 2.0
    power = np.einsum("...ft,mf->...mt", spectrum, mel_filterbank(params), optimize=True)
    return db_scale(power, params)


def centred_frames(y: np.ndarray, hop: int) -> np.ndarray:
    """`y` zero-padded to the frames of a centred STFT: `hop // 2` samples before, so that frame t
    spans the hop centred on sample t * hop, and zeros after up to 1 + len(y) // hop whole hops."""
    frames = 1 + len(y) // hop
    padded = np.zeros(frames * hop, dtype=np.float64)
    padded[hop // 2 : hop // 2 + len(y)] = y[: frames * hop - hop // 2]
    return padded


def lyon_features(y: np.ndarray, params: AudioCoding) -> np.ndarray:
    """Lyon's passive ear model (`lyon` package), decimated to one output per hop, over its peak:
    `[channels, frames]`, low frequencies first. Linear, as the reference fed it to BSA: its AGC
    already compresses (in dB, the quietest output of a clip sits only about 27 dB below its
    peak, so every channel would fire throughout)."""
    try:
        from lyon.calc import LyonCalc
    except ImportError as err:
        raise ImportError(
            "AudioCoding.front_end: got 'lyon' but the lyon package is not installed "
            "(expected `pip install 'hm2bp[lyon]'`, or the front end 'mel' or 'gammatone')"
        ) from err
    hop = params.hop_length
    out = LyonCalc().lyon_passive_ear(centred_frames(y, hop), params.sample_rate, hop)
    out = out.T[::-1]  # the model lists its channels from high to low frequency
    peak = out.max(initial=0.0)
    return out / peak if peak > 0 else np.zeros(out.shape)


def erb_space(fmin_hz: float, fmax_hz: float, n: int) -> np.ndarray:
    """`n` frequencies from `fmin_hz` up, evenly spaced on the ERB-rate scale (Glasberg & Moore
    1990, 21.4 log10(1 + 0.00437 f)), one step below `fmax_hz` at the top."""
    rate = np.linspace(*(21.4 * np.log10(1 + 0.00437 * np.array([fmin_hz, fmax_hz]))), n + 1)
    return (10 ** (rate[:-1] / 21.4) - 1) / 0.00437


@functools.lru_cache(maxsize=8)
def gammatone_filterbank(params: AudioCoding) -> tuple[np.ndarray, ...]:
    """One 4th-order gammatone filter per channel as second-order sections, built once per
    process and parameters (sections, since the direct form loses precision at 50 Hz)."""
    import scipy.signal

    return tuple(
        scipy.signal.tf2sos(*scipy.signal.gammatone(f, "iir", fs=params.sample_rate))
        for f in erb_space(params.fmin_hz, params.fmax_hz, params.n_channels)
    )


def gammatone_features(y: np.ndarray, params: AudioCoding) -> np.ndarray:
    """Mean square of each gammatone filter's output over each frame, `db_scale`d:
    `[channels, frames]`."""
    import scipy.signal

    hop = params.hop_length
    x = centred_frames(y, hop)
    power = [
        np.square(scipy.signal.sosfilt(sos, x)).reshape(-1, hop).mean(axis=1)
        for sos in gammatone_filterbank(params)
    ]
    return db_scale(np.stack(power), params)


FRONT_ENDS: dict[str, Callable[[np.ndarray, AudioCoding], np.ndarray]] = {
    "mel": mel_features,
    "lyon": lyon_features,
    "gammatone": gammatone_features,
}


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: AudioCoding) -> np.ndarray:
    """librosa's mel filterbank `float32 [channels, n_fft // 2 + 1]` (Slaney scale and norm),
    built once per process and parameters; read-only, since every clip shares it."""
    import librosa

    basis = librosa.filters.mel(
        sr=params.sample_rate,
        n_fft=params.n_fft,
        n_mels=params.n_channels,
        fmin=params.fmin_hz,
        fmax=params.fmax_hz,
    )
    basis.flags.writeable = False
    return basis


def bsa_kernel(params: AudioCoding) -> np.ndarray:
    """The BSA FIR kernel `float64 [bsa_length]`, summing to 1."""
    i = np.arange(params.bsa_length)
    k = np.exp(-((i - params.bsa_length // 2) ** 2) / params.bsa_width)
    return k / k.sum()


def bsa_encode(signal: np.ndarray, params: AudioCoding) -> tuple[np.ndarray, np.ndarray]:
    """BSA spikes of `signal [channels, steps]` as `(times uint16, neurons uint32)`, sorted by
    time then neuron. The scan itself is `_bsa_scan`, compiled."""
    kernel = bsa_kernel(params)
    n_channels, length = signal.shape
    positions = min(length, params.T - 1)  # a spike at position i lands at step i + 1 < T
    s = np.zeros((max(length, positions + len(kernel)), n_channels))  # [steps, channels]
    s[:length] = signal.T
    fired = np.zeros((positions, n_channels), dtype=bool)
    _bsa_scan(s, kernel, _sum_plan(len(kernel)), float(params.bsa_threshold), fired)
    steps, channels = np.nonzero(fired)
    return (steps + 1).astype(np.uint16), channels.astype(np.uint32)


@functools.cache
def _sum_plan(n: int) -> np.ndarray:
    """numpy's order for summing `n` terms (`pairwise_sum` in numpy's `loops_utils.h.src`) as a
    postfix program `int64 [ops, 2]`: `(start, size)` sums a block of at most 128 terms the way
    `_block_sums` does, `(-1, 0)` adds the last two sums. numpy recurses above 128 terms,
    splitting at a multiple of 8; numba cannot cache recursive functions (numba issue 6061)."""
    if n <= 128:
        plan = np.array([[0, n]], dtype=np.int64)
    else:
        half = n // 2 - (n // 2) % 8
        right = _sum_plan(n - half).copy()
        right[right[:, 0] >= 0, 0] += half
        plan = np.concatenate([_sum_plan(half), right, np.array([[-1, 0]])])
    plan.flags.writeable = False  # cached: shared by every call
    return plan


# Compiled: BSA is sequential in time (each spike changes the signal the next position sees), so
# numpy stepped through the positions in Python, 1.6 ms of audio per step.
@numba.njit(cache=True)
def _bsa_scan(s, kernel, plan, threshold, fired):
    """BSA over `s float64 [>= positions + len(kernel), channels]` in place, marking
    `fired bool [positions, channels]`. Each position does what the numpy loop this replaced did
    for all channels at once (sum |s| and |s - kernel| over the window in numpy's order, fire
    where the difference exceeds the threshold, subtract the kernel there), so the spikes are
    the same bit for bit (`tests/test_audio_coding.py`); time-major, so that the compiler
    vectorises over channels."""
    channels = s.shape[1]
    level = np.empty((len(plan), channels))  # per channel: sums of |s| (a stack, see `_sum_plan`)
    error = np.empty((len(plan), channels))  # per channel: sums of |s - kernel|
    level_lanes = np.empty((8, channels))
    error_lanes = np.empty((8, channels))
    for i in range(fired.shape[0]):
        top = 0
        for op in range(len(plan)):
            start, size = plan[op, 0], plan[op, 1]
            if start < 0:
                top -= 1
                level[top - 1] += level[top]
                error[top - 1] += error[top]
            else:
                _block_sums(
                    s, i, kernel, start, size, level_lanes, error_lanes, level[top], error[top]
                )
                top += 1
        fire = fired[i]
        for c in range(channels):
            fire[c] = level[0, c] - error[0, c] > threshold
        for j in range(len(kernel)):
            row = s[i + j]
            k = kernel[j]
            for c in range(channels):
                if fire[c]:
                    row[c] -= k


@numba.njit(cache=True)
def _block_sums(s, i, kernel, start, n, level_lanes, error_lanes, level, error):
    """Per channel, the sums of |w| and of |w - kernel[start:start + n]| over the window
    `w = s[i + start : i + start + n]` (n <= 128), added in numpy's order: below 8 terms one by
    one from -0.0; else eight running sums (the lanes), combined pairwise, then the rest one by
    one."""
    channels = s.shape[1]
    if n < 8:
        level[:] = -0.0
        error[:] = -0.0
        for j in range(start, start + n):
            row, k = s[i + j], kernel[j]
            for c in range(channels):
                level[c] += abs(row[c])
                error[c] += abs(row[c] - k)
        return
    for j in range(8):
        row, k = s[i + start + j], kernel[start + j]
        for c in range(channels):
            level_lanes[j, c] = abs(row[c])
            error_lanes[j, c] = abs(row[c] - k)
    whole = n - n % 8
    for block in range(start + 8, start + whole, 8):
        for j in range(8):
            row, k = s[i + block + j], kernel[block + j]
            for c in range(channels):
                level_lanes[j, c] += abs(row[c])
                error_lanes[j, c] += abs(row[c] - k)
    _combine_lanes(level_lanes, level)
    _combine_lanes(error_lanes, error)
    for j in range(start + whole, start + n):
        row, k = s[i + j], kernel[j]
        for c in range(channels):
            level[c] += abs(row[c])
            error[c] += abs(row[c] - k)


@numba.njit(cache=True)
def _combine_lanes(lanes, total):
    """numpy's tree over its eight running sums `lanes [8, channels]`, into `total [channels]`."""
    for c in range(lanes.shape[1]):
        total[c] = ((lanes[0, c] + lanes[1, c]) + (lanes[2, c] + lanes[3, c])) + (
            (lanes[4, c] + lanes[5, c]) + (lanes[6, c] + lanes[7, c])
        )


def rate_encode_features(
    signal: np.ndarray, params: AudioCoding, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli spikes of `signal [channels, steps]` (probabilities per step) as
    `(times uint16, neurons uint32)`, sorted by time then neuron: position i fires at step i + 1
    if that is below T, as BSA's positions do."""
    positions = min(signal.shape[1], params.T - 1)
    p = np.clip(signal[:, :positions].T, 0.0, 1.0)  # [steps, channels]
    steps, channels = np.nonzero(rng.random(p.shape, dtype=np.float32) < p)
    return (steps + 1).astype(np.uint16), channels.astype(np.uint32)


def encode_features(
    features: np.ndarray, params: AudioCoding, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The spikes of `cochleagram`'s features: each frame held `hold_steps` steps, scaled by
    `bsa_gain`, then BSA or rate coding (`rng`, the sample's own stream, is drawn by `rate`
    only), each spike on its segment's input neuron (`segment_neurons`)."""
    held = np.repeat(features, params.hold_steps, axis=1) * params.bsa_gain
    if params.coding == "rate":
        times, channels = rate_encode_features(held, params, rng)
    else:
        times, channels = bsa_encode(held, params)
    if params.segments == 1:  # the reference's layout: no span to find
        return times, channels
    return times, segment_neurons(times, channels, speech_span(features, params), params)


def speech_span(features: np.ndarray, params: AudioCoding) -> tuple[int, int]:
    """The steps `(first, last)` that `segments` divides: from the first to the last frame whose
    loudest channel reaches `speech_level` (24 dB below the clip's peak for mel and gammatone),
    within the coded steps 1..T - 1. Recordings start and end with silence of their own length
    (FSDD's lucas: a quarter of each clip), which would move the same sound to another part."""
    speech = np.flatnonzero(features.max(axis=0, initial=0.0) >= params.speech_level)
    if len(speech) == 0:  # silence: no spike to place
        return 1, 1
    first = speech[0] * params.hold_steps + 1  # frame f: positions f * hold.. (f + 1) * hold - 1
    last = (speech[-1] + 1) * params.hold_steps
    return min(first, params.T - 1), min(last, params.T - 1)


def segment_neurons(
    times: np.ndarray, channels: np.ndarray, span: tuple[int, int], params: AudioCoding
) -> np.ndarray:
    """The input neuron `uint32` of each spike: its channel, moved to the block of the part it
    falls in, `params.segments` equal parts of the steps `span` (at least one step a part; a
    spike before or after the span goes to the first or last part). Spikes sorted by time then
    channel stay sorted by time then neuron, since one step lies in one part."""
    first, last = span
    length = max(last - first + 1, params.segments)
    part = (times.astype(np.int64) - first) * params.segments // length
    part = np.clip(part, 0, params.segments - 1)
    return (part * params.n_channels + channels).astype(np.uint32)


def encode_audio(
    clip: AudioClip, params: AudioCoding, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's spikes: `encode_features` of its `cochleagram`."""
    return encode_features(cochleagram(clip, params), params, rng)
