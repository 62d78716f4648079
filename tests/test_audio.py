"""Audio files shared by TI46 and speech folders: SPHERE in both byte orders, its compressed and
truncated forms refused with a way out, WAV edge cases."""

import numpy as np
import pytest
from hm2bp.pipelines.audio import read_audio, read_sphere_header
from hm2bp.pipelines.errors import BadInputError
from hm2bp.tests.formats import sphere_bytes, wav_bytes

TONE = (8000 * np.sin(np.arange(500) / 7)).astype(np.int16)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_sphere_byte_orders_give_identical_samples(tmp_path):
    little = read_audio(write(tmp_path / "le.sph", sphere_bytes(TONE, byte_order="01")))
    big = read_audio(write(tmp_path / "be.sph", sphere_bytes(TONE, byte_order="10")))
    np.testing.assert_array_equal(little.samples, big.samples)
    np.testing.assert_array_equal(little.samples, TONE / np.float32(32768))
    assert little.samples.dtype == np.float32 and little.sample_rate == big.sample_rate == 12500


def test_sphere_header_fields_are_typed(tmp_path):
    header = read_sphere_header(write(tmp_path / "a.sph", sphere_bytes(TONE, byte_order="10")))
    assert header["sample_rate"] == 12500 and header["sample_count"] == 500
    assert header["sample_byte_format"] == "10" and header["sample_coding"] == "pcm"


def test_shorten_sphere_says_how_to_decompress(tmp_path):
    path = write(
        tmp_path / "0af1set0.sph",
        sphere_bytes(TONE, coding="pcm,embedded-shorten-v2.00", payload=b"ajkq" * 100),
    )
    with pytest.raises(BadInputError, match="embedded-shorten") as err:
        read_audio(path)
    assert err.value.path == str(path) and "sph2pipe -f wav" in err.value.expected


def test_truncated_sphere_is_refused(tmp_path):
    path = write(tmp_path / "cut.sph", sphere_bytes(TONE)[: 1024 + 300])
    with pytest.raises(BadInputError, match="300 bytes of samples"):
        read_audio(path)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (wav_bytes([], 8000), "no samples"),
        (wav_bytes(TONE, 0), "sample rate 0 Hz"),
        (wav_bytes(TONE, 100), "sample rate 100 Hz"),
        (b"RIFF" + bytes(40), "unreadable audio"),
        (sphere_bytes(TONE, rate=0), "sample rate 0"),
    ],
)
def test_unusable_recordings_name_the_file(tmp_path, data, match):
    path = write(tmp_path / "bad.wav", data)
    with pytest.raises(BadInputError, match=match) as err:
        read_audio(path)
    assert err.value.path == str(path)


def test_stereo_is_averaged_to_mono(tmp_path):
    stereo = np.stack([TONE, np.zeros_like(TONE)], axis=1)
    clip = read_audio(write(tmp_path / "st.wav", wav_bytes(stereo, 8000, channels=2)))
    np.testing.assert_allclose(clip.samples, TONE / 32768 / 2, atol=1e-7)
    assert clip.sample_rate == 8000
