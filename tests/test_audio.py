"""Audio files shared by TI46 and speech folders: SPHERE in both byte orders, its compressed and
truncated forms refused with a way out, WAV edge cases."""

import numpy as np
import pytest
from hm2bp.pipelines.audio import read_audio, read_sphere_header
from hm2bp.pipelines.errors import BadInputError
from hm2bp.tests.formats import sphere_bytes, wav_bytes

TONE = (8000 * np.sin(np.arange(600) / 7)).astype(np.int16)  # 48 ms at 12.5 kHz


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
    assert header["sample_rate"] == 12500 and header["sample_count"] == 600
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
        (wav_bytes([], 8000), "too short: 0 samples"),
        (wav_bytes(TONE, 0), "sample rate 0 Hz"),
        (wav_bytes(TONE, 100), "sample rate 100 Hz"),
        (b"RIFF" + bytes(40), "header b'RIFF"),
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


def flipped(data: bytes, at: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= mask
    return bytes(changed)


def read_or_none(path):
    """The clip, or None for a `BadInputError` naming `path`."""
    try:
        return read_audio(path)
    except BadInputError as err:
        assert err.path == str(path)
        return None


def test_every_flip_in_a_wav_header_is_caught(tmp_path):
    """A WAV header repeats itself (RIFF size and file size, byte rate and block size against
    rate, channels and width, data size in whole blocks), so no flip in its 44 bytes goes unseen.
    Its samples carry no checksum: a flipped sample byte is undetectable."""
    data = wav_bytes(TONE, 12500)
    path = tmp_path / "a.wav"
    for at in range(44):
        for mask in (0x01, 0x80, 0xFF):
            path.write_bytes(flipped(data, at, mask))
            assert read_or_none(path) is None, (at, mask)
    path.write_bytes(flipped(data, 44, 0x01))
    clip = read_audio(path)  # undetectable
    assert clip.samples[0] != TONE[0] / np.float32(32768)


def test_every_flip_in_a_sphere_header_is_caught_but_a_rate_in_range(tmp_path):
    """A SPHERE header is text: a flip that breaks a required field, the coding, the byte order,
    the header size or `sample_count` is caught; one that turns the sample rate into another rate
    in range (12500 into 12501) is undetectable, as is any flipped sample byte unless the header
    carries a `sample_checksum`."""
    data = sphere_bytes(TONE)
    rate_digits = range(data.index(b"12500"), data.index(b"12500") + 5)
    path = tmp_path / "a.sph"
    for at in range(data.index(b"end_head") + len("end_head")):
        for mask in (0x01, 0x80, 0xFF):
            path.write_bytes(flipped(data, at, mask))
            clip = read_or_none(path)
            if clip is not None and clip.sample_rate != 12500:
                assert at in rate_digits, (at, mask)
            elif clip is not None:  # a line break turned into another ("\n" into "\v")
                np.testing.assert_array_equal(clip.samples, TONE / np.float32(32768))


def test_sphere_sample_checksum_is_checked_where_the_header_has_one(tmp_path):
    checksum = int(TONE.view(np.uint16).sum(dtype=np.uint64) % 2**16)  # NIST's 16-bit sum
    for order in ("01", "10"):
        data = sphere_bytes(TONE, byte_order=order, extra=(f"sample_checksum -i {checksum}",))
        path = write(tmp_path / f"{order}.sph", data)
        np.testing.assert_array_equal(read_audio(path).samples, TONE / np.float32(32768))
        write(path, flipped(data, 1024 + 333, 0x10))
        with pytest.raises(BadInputError, match=f"sample checksum .* \\(expected {checksum}"):
            read_audio(path)


def cut_keeping_riff_size(wav: bytes, cut: int) -> bytes:
    """A WAV file cut short whose RIFF size was rewritten to match: only the data chunk's own
    size still tells."""
    wav = wav[:-cut]
    return wav[:4] + (len(wav) - 8).to_bytes(4, "little") + wav[8:]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (wav_bytes(TONE, 12500)[:-100], "RIFF size 1236 \\+ 8 bytes"),
        (cut_keeping_riff_size(wav_bytes(TONE, 12500), 100), "chunk b'data' of 1200 bytes"),
        (wav_bytes([7], 8000), "too short: 1 samples \\(expected at least 328 \\(41 ms at 8000"),
        (sphere_bytes(TONE) + b"\0\0", "1202 bytes of samples \\(expected 1200"),
        (sphere_bytes(TONE).replace(b"  1024", b"  1000", 1), "header size 1000"),
        (sphere_bytes(TONE).replace(b"channel_count -i 1\n", b""), "no channel_count"),
        (sphere_bytes(TONE, byte_order="00"), "byte order '00'"),
        (sphere_bytes(TONE).replace(b"sample_count -i 600", b"sample_count -i 6x0"), "header line"),
        (b"OggS" + bytes(100), "header b'OggS"),
    ],
)
def test_headers_that_disagree_with_the_file_name_it(tmp_path, data, match):
    path = write(tmp_path / "bad.wav", data)
    with pytest.raises(BadInputError, match=match) as err:
        read_audio(path)
    assert err.value.path == str(path)
