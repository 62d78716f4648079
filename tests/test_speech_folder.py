"""Folders of labelled WAV files: the real FSDD recordings, and a folder of another naming."""

from collections import Counter

import numpy as np
import pytest
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.speech_folder import SpeechFolder, folder_classes
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.formats import wav_bytes

TONE = (8000 * np.sin(np.arange(800) / 3)).astype(np.int16)  # 50 ms at 16 kHz
COMMANDS = r"(?P<speaker>[a-z]+)-(?P<label>\w+)\.(?i:wav)"


def write(folder, name, data=None):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(TONE, 16000) if data is None else data)
    return path


@pytest.mark.shared
def test_fsdd_five_speakers_ten_digits_fifty_takes():
    folder = shared_path("data", "fsdd", "recordings")
    classes = folder_classes(folder)
    assert classes == tuple("0123456789")
    reader = SpeechFolder(classes)
    refs = reader.index(folder)
    assert len(refs) == 2500
    cells = Counter((ref.meta["speaker"], ref.label) for ref in refs)
    assert len(cells) == 5 * 10 and set(cells.values()) == {50}
    assert {ref.meta["take"] for ref in refs} == {str(n) for n in range(50)}
    assert {ref.split for ref in refs} == {None}
    ref = next(r for r in refs if r.sample_id == "7_theo_12.wav")
    assert (ref.label, dict(ref.meta)) == (7, {"speaker": "theo", "take": "12"})

    for clip in reader.load(folder, refs[::250]):  # ten decodes, not 2,500
        assert clip.sample_rate == 8000 and clip.samples.dtype == np.float32
        assert 0.1 < len(clip.samples) / 8000 < 3 and 0 < np.abs(clip.samples).max() <= 1


def test_own_pattern_nested_folders_classes_sorted(tmp_path):
    for name in ["a/ann-yes.wav", "a/ann-10.wav", "b/bob-2.WAV", "b/bob-no.wav", "notes.txt"]:
        write(tmp_path, name, b"text" if name.endswith("txt") else None)
    classes = folder_classes(tmp_path, COMMANDS)
    assert classes == ("2", "10", "no", "yes")  # integers by value, before words
    refs = SpeechFolder(classes, COMMANDS).index(tmp_path)
    assert [(r.sample_id, classes[r.label], r.meta["speaker"]) for r in refs] == [
        ("a/ann-10.wav", "10", "ann"),
        ("a/ann-yes.wav", "yes", "ann"),
        ("b/bob-2.WAV", "2", "bob"),
        ("b/bob-no.wav", "no", "bob"),
    ]


def test_labels_names_and_payloads_that_do_not_fit(tmp_path):
    write(tmp_path, "ann-maybe.wav")
    with pytest.raises(BadInputError, match="label 'maybe'") as err:
        SpeechFolder(("yes", "no"), COMMANDS).index(tmp_path)
    assert err.value.path == str(tmp_path / "ann-maybe.wav")
    write(tmp_path, "ann_maybe.wav")
    with pytest.raises(BadInputError, match="does not match"):
        SpeechFolder(("maybe",), COMMANDS).index(tmp_path)


def test_empty_recording_is_refused_on_load(tmp_path):
    path = write(tmp_path, "3_ann_0.wav", wav_bytes([], 8000))
    reader = SpeechFolder(("3",))
    with pytest.raises(BadInputError, match="too short: 0 samples") as err:
        list(reader.load(tmp_path, reader.index(tmp_path)))
    assert err.value.path == str(path)


def test_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="named group 'label'"):
        SpeechFolder(("a",), r"(?P<speaker>\w+)\.wav")
    with pytest.raises(ValueError, match="wav pattern"):
        SpeechFolder(("a",), "(unclosed")
    with pytest.raises(BadInputError, match="no .wav files"):
        folder_classes(tmp_path)


def test_skip_bad_lists_names_that_do_not_fit_and_goes_on(tmp_path):
    write(tmp_path, "3_ann_0.wav")
    write(tmp_path, "3-ann-1.wav")  # not FSDD's pattern
    write(tmp_path, "4_ann_0.wav")  # a label outside the classes given
    assert folder_classes(tmp_path) == ("3", "4")  # names that do not match are passed over
    with pytest.raises(BadInputError, match="does not match") as err:
        SpeechFolder(("3",)).index(tmp_path)
    assert err.value.path == str(tmp_path / "3-ann-1.wav")
    index = SpeechFolder(("3",)).index(tmp_path, skip_bad=True)
    assert [ref.sample_id for ref in index] == ["3_ann_0.wav"]
    assert [(s.path, s.sample_ids) for s in index.skipped] == [
        (str(tmp_path / "3-ann-1.wav"), ("3-ann-1.wav",)),
        (str(tmp_path / "4_ann_0.wav"), ("4_ann_0.wav",)),
    ]
    with pytest.raises(BadInputError, match="no file name matches"):
        folder_classes(tmp_path, r"(?P<label>x)\.wav")


def test_a_one_sample_recording_is_too_short(tmp_path):
    """It used to become a silent sample with no spikes and only a library warning."""
    path = write(tmp_path, "3_ann_0.wav", wav_bytes([7], 8000))
    reader = SpeechFolder(("3",))
    with pytest.raises(BadInputError, match="too short: 1 samples") as err:
        list(reader.load(tmp_path, reader.index(tmp_path)))
    assert err.value.path == str(path) and err.value.expected.startswith("at least 328")
