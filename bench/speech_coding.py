"""Where speech accuracy is lost (issue 15): how much class information each audio front end
keeps, and how much of it survives the spike coding, measured without any spiking network.

    HM2BP_SHARED_DIR=../shared .venv/bin/python bench/speech_coding.py [--every N]
        [--front-end mel ...] [--readout utterance|speech|absolute|whole]

For every front end (`mel`, `lyon`, `gammatone`) and coding (`bsa`, `rate`) of `AudioCoding`, the
clips of FSDD (all five speakers) and TI46-synth (TI-Alpha) go through the pipeline's own functions
in this process (`cochleagram`, then `encode_features` with the sample's seeded stream, exactly what
a conversion writes, without Ray or shards). A logistic regression then reads the exact spike counts
per channel in `BINS` equal time bins of each utterance (its steps 1..n, n the held frames, at most
T - 1). `--readout speech` bins the speech instead, as the encoder's `segments` do (`BINS` parts of
the steps from the first to the last frame that reaches `speech_level`, the silence around them in
the first and last part): these are the counts of the default encoder's 624 inputs, whole-sample
counts of every input. `--readout absolute` bins the T steps instead (the same step in every
utterance falls in the same bin), and `--readout whole` counts each channel over the whole
utterance, one bin: the order-free view of an SNN whose class is its output neurons' spike counts
over the sample. The ceiling row ("features") gives the same classifier the same bins of the
continuous features before coding (held and scaled by `bsa_gain`, i.e. the expected counts of rate
coding). FSDD: speaker-independent, the folds of bench/fsdd_logreg.py (train on four speakers, test
on the fifth); TI46-synth: its own train/test sessions (speaker-dependent).

Also printed: spikes per channel and step (all spikes over channels x coded steps), and conversion
speed in clips per second (front end plus coding, one process, FSDD and TI46-synth together).
`--every N` keeps every Nth clip of each data set, for a quick look.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
from hm2bp.pipelines.audio_coding import (
    CODINGS,
    FRONT_ENDS,
    AudioCoding,
    cochleagram,
    encode_features,
    speech_span,
)
from hm2bp.pipelines.registry import get_reader
from hm2bp.pipelines.seeding import sample_rng
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BINS = AudioCoding.segments  # the default encoder's parts: `speech` is its layout
SEED = 0  # the conversion's default seed
READOUTS = ("utterance", "speech", "absolute", "whole")


@dataclasses.dataclass
class Corpus:
    name: str
    clips: list
    sample_ids: list[str]
    labels: np.ndarray
    speakers: np.ndarray
    splits: np.ndarray


def load(name: str, reader_name: str, source: Path, every: int) -> Corpus:
    reader = get_reader(reader_name, source)
    refs = reader.index(source).refs[::every]
    return Corpus(
        name,
        list(reader.load(source, refs)),
        [ref.sample_id for ref in refs],
        np.array([ref.label for ref in refs]),
        np.array([ref.meta["speaker"] for ref in refs]),
        np.array([ref.split for ref in refs]),
    )


def bin_edges(steps: int, span: tuple[int, int], T: int, readout: str) -> np.ndarray:
    """The time bins' edges: `BINS` over the utterance's coded steps 1..steps (at least one step
    per bin), `BINS` over its speech `span` and the silence around it (`speech`), `BINS` over the
    steps 1..T - 1 (`absolute`), or one bin (`whole`)."""
    if readout == "whole":
        return np.array([1.0, T])
    if readout == "speech":  # `segment_neurons`' parts: step t is in the k-th from first + k L / K
        first, last = span
        parts = first + np.arange(1, BINS) * max(last - first + 1, BINS) / BINS
        return np.concatenate([[1.0], parts, [T]])
    if readout == "absolute":
        return np.linspace(1, T, BINS + 1)
    return np.linspace(1, max(steps, BINS) + 1, BINS + 1)


def spike_bins(
    times: np.ndarray, neurons: np.ndarray, channels: int, edges: np.ndarray
) -> np.ndarray:
    """Exact spike counts `[channels * bins]` per channel and time bin."""
    counts, _, _ = np.histogram2d(neurons, times, bins=[np.arange(channels + 1), edges])
    return counts.ravel()


def feature_bins(
    features: np.ndarray, params: AudioCoding, steps: int, edges: np.ndarray
) -> np.ndarray:
    """The held, scaled features summed over the same bins: `[channels * bins]`."""
    held = np.repeat(features, params.hold_steps, axis=1)[:, :steps] * params.bsa_gain
    where = np.digitize(np.arange(1, steps + 1), edges) - 1
    sums = np.zeros((len(features), len(edges) - 1))
    np.add.at(sums.T, where, held.T)
    return sums.ravel()


def accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[train], y[train])
    return 100 * model.score(x[~train], y[~train])


def measure(corpus: Corpus, front_end: str, readout: str) -> dict[str, dict]:
    """Per coding (and `features`): the binned inputs, spikes per channel and step, and seconds
    spent on the front end and on the coding."""
    rows: dict[str, dict] = {}
    params = AudioCoding(front_end=front_end, segments=1)  # the channels; bins place the time
    for coding in CODINGS:  # compiled code and cached filterbanks, before the clock starts
        warm = dataclasses.replace(params, coding=coding)
        encode_features(cochleagram(corpus.clips[0], warm), warm, sample_rng(SEED, "warm-up"))
    start = time.perf_counter()
    features = [cochleagram(clip, params) for clip in corpus.clips]
    front_s = time.perf_counter() - start
    steps = [min(f.shape[1] * params.hold_steps, params.T - 1) for f in features]
    edges = [
        bin_edges(n, speech_span(f, params), params.T, readout)
        for f, n in zip(features, steps, strict=True)
    ]
    rows["features"] = {
        "x": np.stack(
            [feature_bins(f, params, n, e) for f, n, e in zip(features, steps, edges, strict=True)]
        ),
        "front_s": front_s,
    }
    for coding in CODINGS:
        coded = dataclasses.replace(params, coding=coding)
        start = time.perf_counter()
        spikes = [
            encode_features(f, coded, sample_rng(SEED, sample_id))
            for f, sample_id in zip(features, corpus.sample_ids, strict=True)
        ]
        code_s = time.perf_counter() - start
        x = np.stack(
            [
                spike_bins(times, neurons, params.n_channels, e)
                for (times, neurons), e in zip(spikes, edges, strict=True)
            ]
        )
        rows[coding] = {
            "x": x,
            "front_s": front_s,
            "code_s": code_s,
            "rate": x.sum() / (params.n_channels * sum(steps)),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="keep every Nth clip (default 1)")
    parser.add_argument("--front-end", nargs="+", choices=FRONT_ENDS, default=list(FRONT_ENDS))
    parser.add_argument("--readout", choices=READOUTS, default="utterance", help="time bins")
    args = parser.parse_args()
    shared = Path(os.environ.get("HM2BP_SHARED_DIR", "../shared")) / "data"
    fsdd = load("FSDD", "wav", shared / "fsdd/recordings", args.every)
    ti46 = load("TI46-synth", "ti46", shared / "ti46-synth", args.every)
    speakers = sorted(set(fsdd.speakers))
    clips = f"{len(fsdd.clips)} FSDD clips, {len(ti46.clips)} TI46-synth clips"
    print(f"{clips}; readout {args.readout}")
    print()
    print(
        "| front end | input | FSDD mean | "
        + " | ".join(speakers)
        + " | TI46-synth | spikes / channel / step | clips/s |"
    )
    print(
        "| --- | --- | ---: | " + " | ".join("---:" for _ in speakers) + " | ---: | ---: | ---: |"
    )
    for front_end in args.front_end:
        on_fsdd = measure(fsdd, front_end, args.readout)
        on_ti46 = measure(ti46, front_end, args.readout)
        for row in ("features", *CODINGS):
            folds = [accuracy(on_fsdd[row]["x"], fsdd.labels, fsdd.speakers != s) for s in speakers]
            ti46_acc = accuracy(on_ti46[row]["x"], ti46.labels, ti46.splits == "train")
            if row == "features":
                rate, speed = "", ""
                name = "features (ceiling)"
            else:
                spent = sum(m[row]["front_s"] + m[row]["code_s"] for m in (on_fsdd, on_ti46))
                rate = f"{on_fsdd[row]['rate']:.3f} / {on_ti46[row]['rate']:.3f}"
                speed = f"{(len(fsdd.clips) + len(ti46.clips)) / spent:.0f}"
                name = row
            print(
                f"| {front_end} | {name} | **{np.mean(folds):.1f} %** | "
                + " | ".join(f"{a:.1f}" for a in folds)
                + f" | {ti46_acc:.1f} % | {rate} | {speed} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
