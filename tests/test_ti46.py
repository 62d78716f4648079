"""TI46: the synthetic TI-Alpha stand-in in the LDC layout, and fixtures for name parsing in any
case, the TI-20 codes, WAV beside SPHERE, and broken layouts."""

from collections import Counter

import numpy as np
import pytest
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.ti46 import TI46
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.formats import sphere_bytes, wav_bytes

TONE = (8000 * np.sin(np.arange(600) / 5)).astype(np.int16)  # 48 ms at 12.5 kHz


def recording(root, relative, data=None):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sphere_bytes(TONE) if data is None else data)
    return path


@pytest.mark.shared
def test_alpha_stand_in_26_letters_by_16_speakers():
    folder = shared_path("data", "ti46-synth")
    reader = TI46()
    refs = reader.index(folder)
    assert len(refs) == 2080
    assert reader.facts.classes == tuple("abcdefghijklmnopqrstuvwxyz")
    per_letter_speaker = Counter((ref.label, ref.meta["speaker"]) for ref in refs)
    assert len(per_letter_speaker) == 26 * 16 and set(per_letter_speaker.values()) == {5}
    assert Counter(ref.split for ref in refs) == {"train": 26 * 16 * 3, "test": 26 * 16 * 2}
    first = refs[0]
    assert first.sample_id == "ti_alpha/test/f1/0af1s1t0.sph"
    assert (first.label, first.meta) == (0, {"speaker": "f1", "session": "s1t0"})
    assert reader.index(folder / "ti_alpha") == refs  # the vocabulary folder is a source too

    for clip in reader.load(folder, refs[::400]):
        assert clip.sample_rate == 12500 and clip.samples.dtype == np.float32
        assert 0.2 < len(clip.samples) / 12500 < 2.0 and 0 < np.abs(clip.samples).max() <= 1


@pytest.mark.parametrize(
    "relative",
    [
        "TI_ALPHA/TRAIN/F1/0AF1SET0.SPH",
        "ti_alpha/train/f1/0af1set0.sph",
        "Ti_Alpha/Train/F1/0aF1Set0.Sph",
    ],
)
def test_names_parse_in_any_case(tmp_path, relative):
    recording(tmp_path, relative)
    (ref,) = TI46().index(tmp_path)
    assert (ref.label, ref.split, dict(ref.meta)) == (
        0,
        "train",
        {"speaker": "f1", "session": "set0"},
    )
    assert ref.sample_id == relative
    (clip,) = TI46().load(tmp_path, [ref])
    np.testing.assert_array_equal(clip.samples, TONE / np.float32(32768))


def test_ti20_codes_digits_then_commands(tmp_path):
    for name in ["00m3set0.sph", "09m3set1.sph", "15m3set0.sph", "19m3set0.sph"]:
        recording(tmp_path, f"ti20/train/m3/{name}")
    recording(tmp_path, "ti_alpha/train/m3/0zm3set0.sph")  # another vocabulary, not read
    reader = TI46("ti20")
    words = [reader.facts.classes[ref.label] for ref in reader.index(tmp_path)]
    assert words == ["zero", "nine", "rubout", "yes"]
    assert len(reader.facts.classes) == 20


def test_wav_beside_its_sphere_is_read_instead(tmp_path):
    shorten = sphere_bytes(TONE, coding="pcm,embedded-shorten-v2.00", payload=b"x" * 99)
    recording(tmp_path, "ti_alpha/test/m2/0bm2s1t0.sph", shorten)
    refs = TI46().index(tmp_path)
    with pytest.raises(BadInputError, match="sph2pipe"):
        list(TI46().load(tmp_path, refs))
    recording(tmp_path, "ti_alpha/test/m2/0bm2s1t0.wav", wav_bytes(TONE, 12500))  # sph2pipe's
    (ref,) = TI46().index(tmp_path)
    assert ref.locator == "ti_alpha/test/m2/0bm2s1t0.wav" and ref.label == 1
    assert len(next(TI46().load(tmp_path, [ref])).samples) == len(TONE)


@pytest.mark.parametrize(
    ("relative", "match"),
    [
        ("ti_alpha/train/f1/1af1set0.sph", "name '1af1set0.sph'"),
        ("ti_alpha/train/f2/0af1set0.sph", "speaker 'f1' in the name"),
        ("ti_alpha/train/0af1set0.sph", "at train/0af1set0.sph"),
        ("ti_alpha/dev/f1/0af1set0.sph", "at dev/f1"),
    ],
)
def test_files_outside_the_layout_are_refused(tmp_path, relative, match):
    path = recording(tmp_path, relative)
    with pytest.raises(BadInputError, match=match) as err:
        TI46().index(tmp_path)
    assert err.value.path == str(path)


def test_missing_vocabulary_folder_and_unknown_vocabulary(tmp_path):
    with pytest.raises(BadInputError, match="no ti_alpha/ folder"):
        TI46().index(tmp_path)
    with pytest.raises(ValueError, match="ti46 vocabulary 'ti_beta'"):
        TI46("ti_beta")


def test_skip_bad_lists_recordings_outside_the_layout_and_goes_on(tmp_path):
    recording(tmp_path, "ti_alpha/train/f1/0af1set0.sph")
    misnamed = recording(tmp_path, "ti_alpha/train/f1/1af1set0.sph")
    with pytest.raises(BadInputError, match="name '1af1set0.sph'"):
        TI46().index(tmp_path)
    index = TI46().index(tmp_path, skip_bad=True)
    assert [ref.sample_id for ref in index] == ["ti_alpha/train/f1/0af1set0.sph"]
    assert [(s.path, s.sample_ids) for s in index.skipped] == [
        (str(misnamed), ("ti_alpha/train/f1/1af1set0.sph",))
    ]
    assert index.skipped[0].reason.startswith("name '1af1set0.sph' (expected <code>")
