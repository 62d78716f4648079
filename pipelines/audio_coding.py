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

from dataclasses import dataclass

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
    if not power.max() > 1e-10:  # digital silence: no energy, no spikes
        return np.zeros(power.shape, dtype=np.float32)
    db = librosa.power_to_db(power, ref=np.max, top_db=params.dynamic_range_db)  # [-range, 0]
    return (1.0 + db / params.dynamic_range_db).astype(np.float32)


def bsa_kernel(params: AudioCoding) -> np.ndarray:
    """The BSA FIR kernel `float64 [bsa_length]`, summing to 1."""
    i = np.arange(params.bsa_length)
    k = np.exp(-((i - params.bsa_length // 2) ** 2) / params.bsa_width)
    return k / k.sum()


def bsa_encode(signal: np.ndarray, params: AudioCoding) -> tuple[np.ndarray, np.ndarray]:
    """BSA spikes of `signal [channels, steps]` as `(times uint16, neurons uint32)`, sorted by
    time then neuron. Sequential in time, vectorised over channels."""
    kernel = bsa_kernel(params)
    n_channels, length = signal.shape
    positions = min(length, params.T - 1)  # a spike at position i lands at step i + 1 < T
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


def encode_audio(clip: AudioClip, params: AudioCoding) -> tuple[np.ndarray, np.ndarray]:
    """One clip's spikes: `cochleagram`, each frame held `hold_steps` steps, scaled, then BSA."""
    features = cochleagram(clip, params)
    held = np.repeat(features, params.hold_steps, axis=1)
    return bsa_encode(held * params.bsa_gain, params)
