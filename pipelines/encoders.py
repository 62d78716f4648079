"""The encoders by name: which one a data set's kind gets, and how a manifest names it.

Each encoder is a pure function with a frozen dataclass of parameters (`rate_coding.py`,
`event_binning.py`, `audio_coding.py`); this file only maps between them, the kind of data a reader
declares, and the name and parameters the manifest records, so that a trainer can rebuild the exact
parameters (for example to re-encode raw pixels each epoch).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from hm2bp.pipelines.audio_coding import AudioCoding, encode_audio
from hm2bp.pipelines.event_binning import EventBinning, bin_events
from hm2bp.pipelines.rate_coding import RateCoding, rate_encode
from hm2bp.pipelines.source import DatasetFacts, Payload

EncoderParams = RateCoding | EventBinning | AudioCoding

# name in the manifest -> (parameter class, kind of data it encodes)
ENCODERS: dict[str, tuple[type, str]] = {
    "rate": (RateCoding, "image"),
    "event_binning": (EventBinning, "events"),
    "cochlea_bsa": (AudioCoding, "audio"),
}

MAX_STEPS = 2**16  # spike times are stored as uint16

# Parameters added to an encoder after manifests were written without them, with the value those
# manifests were encoded with where it is not the default now.
RECORDED_BEFORE: dict[str, dict[str, Any]] = {"cochlea_bsa": {"segments": 1}}


def encoder_name(params: EncoderParams) -> str:
    return next(name for name, (cls, _) in ENCODERS.items() if isinstance(params, cls))


def default_encoder(kind: str) -> EncoderParams:
    """The reference's encoder for a kind of data (`image`, `events` or `audio`)."""
    for cls, encoder_kind in ENCODERS.values():
        if encoder_kind == kind:
            return cls()
    raise ValueError(f"kind: got {kind!r} (expected one of image, events, audio)")


def encoder_from_record(name: str, params: dict[str, Any]) -> EncoderParams:
    """The parameters a manifest recorded, as their dataclass again (`RECORDED_BEFORE` for a
    parameter the manifest predates)."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: got {name!r} (expected one of {', '.join(ENCODERS)})")
    return ENCODERS[name][0](**{**RECORDED_BEFORE.get(name, {}), **params})


def input_shape(params: EncoderParams, facts: DatasetFacts) -> tuple[int, ...]:
    """What the spikes index into: the reader's image or sensor shape, or the audio inputs
    (channels times segments)."""
    if isinstance(params, AudioCoding):
        return (params.n_inputs,)
    return tuple(facts.input_shape)


def check_step(dt_ms: float) -> None:
    """A step is a finite, positive number of milliseconds."""
    if not (isinstance(dt_ms, int | float) and math.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f"dt_ms: got {dt_ms} (expected a finite number of ms above 0)")


def check_encoder(params: EncoderParams, facts: DatasetFacts) -> None:
    """Refuse an encoder that does not fit the data set, before any task starts."""
    check_step(params.dt_ms)
    name = encoder_name(params)
    if ENCODERS[name][1] != facts.kind:
        raise ValueError(
            f"encoder: got {name!r} for {facts.name!r}, a data set of kind {facts.kind!r} "
            f"(expected the {facts.kind} encoder {encoder_name(default_encoder(facts.kind))!r})"
        )
    if not 2 <= params.T <= MAX_STEPS:
        raise ValueError(f"T: got {params.T} (expected 2..{MAX_STEPS}: times are stored as uint16)")


def encode(
    payload: Payload, params: EncoderParams, rng: np.random.Generator, facts: DatasetFacts
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's spikes `(times uint16, neurons uint32)`, sorted by time then neuron; `rng` is
    the sample's own stream (`seeding.sample_rng`), used by the stochastic encoders only; `facts`
    are the data set's (an event sensor's size)."""
    if isinstance(params, RateCoding):
        return rate_encode(payload, params, rng)
    if isinstance(params, EventBinning):
        return bin_events(payload, params, facts.input_shape)
    return encode_audio(payload, params, rng)


def params_record(params: EncoderParams) -> dict[str, Any]:
    """The JSON-ready parameters the manifest records."""
    return dataclasses.asdict(params)
