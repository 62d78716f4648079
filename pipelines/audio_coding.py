"""Audio to spikes: a cochlear-like filterbank, then Ben's Spiker Algorithm (spec section 2.4).

The reference fed TI46 through Lyon's passive ear model (78 channels at 12.5 kHz, decimated by 200,
i.e. one frame every 16 ms), held each frame for 10 steps and encoded every channel with BSA. We
keep that shape with librosa: resample to 12.5 kHz; a 78-band mel filterbank (50 Hz to 6.25 kHz) on
an STFT with a 512-sample window and a hop of 200 samples, so frames come at the reference's 62.5
per second; power in dB relative to the clip's loudest bin, floored `dynamic_range_db` below it and
scaled to [0, 1] (the per-clip reference stands in for Lyon's automatic gain control). Each frame is
held `hold_steps` steps of `dt_ms` (10 x 1.6 ms = one 16 ms hop), so the neuron index is the channel
and the step is physical time: step = 1.6 ms of audio.

BSA then runs per channel: FIR kernel k_i ~ exp(-(i - 12)^2 / 25), i = 0..23, normalised to sum 1;
at each position i, a spike if sum|s - k| < sum|s| - 0.6 over the window s[i:i+24] (zeros past the
end), and then the kernel is subtracted from s; the spike goes to step i + 1 and is kept if < T. The
reference scaled Lyon's outputs by 2000; our features are in [0, 1], so `bsa_gain` scales them
instead. Since every spike removes one unit of signal mass, a steady signal a fires about a spikes
per step (BSA overshoots by 10-20 %) once a exceeds about 0.1, the kernel's reach: with the default
gain 0.5, a channel at the clip's peak level fires about 0.6 times per step (about 370 spikes/s),
and channels more than about 48 dB below the peak stay silent. On FSDD and the TI46 stand-in this
gives 0.1-0.25 spikes per channel and step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
from hm2bp.pipelines.source import AudioClip


@dataclass(frozen=True)
class AudioCoding:
    """Front-end and BSA parameters; recorded in the manifest."""

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

    def __post_init__(self) -> None:
        hop = self.sample_rate * self.dt_ms * self.hold_steps / 1000
        if self.T < 2 or self.hold_steps < 1 or abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
            raise ValueError(
                f"AudioCoding: got T={self.T}, dt_ms={self.dt_ms}, hold_steps={self.hold_steps} at "
                f"{self.sample_rate} Hz (expected T >= 2 and dt_ms * hold_steps spanning a whole "
                "number of samples)"
            )

    @property
    def hop_length(self) -> int:
        """Samples per frame: 200 at 12.5 kHz with the defaults (the reference's decimation)."""
        return round(self.sample_rate * self.dt_ms * self.hold_steps / 1000)


def cochleagram(clip: AudioClip, params: AudioCoding) -> np.ndarray:
    """Log mel energies `float32 [channels, frames]` in [0, 1], one frame per hop (16 ms)."""
    import librosa  # lazy: its first use compiles numba code; image and event paths never pay it

    y = np.asarray(clip.samples, dtype=np.float32)
    if clip.sample_rate != params.sample_rate:
        y = librosa.resample(y, orig_sr=clip.sample_rate, target_sr=params.sample_rate)
    # `librosa.feature.melspectrogram(power=2.0)` step by step, with its filterbank built once per
    # process (`mel_filterbank`) instead of once per clip, a third of the front end's time.
    spectrum = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=params.hop_length)) ** 2.0
    power = np.einsum("...ft,mf->...mt", spectrum, mel_filterbank(params), optimize=True)
    if not power.max() > 1e-10:  # digital silence: no energy, no spikes
        return np.zeros(power.shape, dtype=np.float32)
    db = librosa.power_to_db(power, ref=np.max, top_db=params.dynamic_range_db)  # [-range, 0]
    return (1.0 + db / params.dynamic_range_db).astype(np.float32)


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


def encode_audio(clip: AudioClip, params: AudioCoding) -> tuple[np.ndarray, np.ndarray]:
    """One clip's spikes: `cochleagram`, each frame held `hold_steps` steps, scaled, then BSA."""
    features = cochleagram(clip, params)
    held = np.repeat(features, params.hold_steps, axis=1)
    return bsa_encode(held * params.bsa_gain, params)
