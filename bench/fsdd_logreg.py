"""The non-spiking baseline beside the FSDD rows of docs/reproduction.md: a logistic regression on
log-mel features, speaker-independent (train on four speakers, validate on the fifth, each in
turn), so that every held-out speaker's HM2-BP accuracy has its own reference point.

    HM2BP_SHARED_DIR=../shared .venv/bin/python bench/fsdd_logreg.py

Features: 40 log-mel bands (25 ms windows, 10 ms hops at 8 kHz), their mean and standard deviation
over the utterance; standardised on the training speakers.
"""

from __future__ import annotations

import os
from pathlib import Path

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def features(path: Path) -> np.ndarray:
    audio, rate = librosa.load(path, sr=None)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=rate, n_fft=200, hop_length=80, n_mels=40, fmax=rate / 2
    )
    log_mel = np.log(mel + 1e-6)
    return np.concatenate([log_mel.mean(axis=1), log_mel.std(axis=1)])


def main() -> None:
    folder = Path(os.environ.get("HM2BP_SHARED_DIR", "../shared")) / "data/fsdd/recordings"
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise SystemExit(f"{folder}: no .wav recordings (expected <digit>_<speaker>_<n>.wav)")
    x = np.stack([features(f) for f in files])
    digits = np.array([int(f.stem.split("_")[0]) for f in files])
    speakers = np.array([f.stem.split("_")[1] for f in files])
    print("| held-out speaker | logistic regression on log-mel |")
    print("| --- | ---: |")
    for speaker in sorted(set(speakers)):
        held = speakers == speaker
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x[~held], digits[~held])
        print(f"| {speaker} | {100 * model.score(x[held], digits[held]):.1f} % |")


if __name__ == "__main__":
    main()
