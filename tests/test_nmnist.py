"""N-MNIST: the real 1,000-sample slice, exact decoding, zips read in place (and refused when
crafted), and the reference's saccade stabilisation."""

import zipfile
from collections import Counter

import numpy as np
import pytest
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.nmnist import EVENTS_DTYPE, NMNIST, decode, stabilize
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.formats import nmnist_bytes


def events(x, y, p, t) -> np.ndarray:
    out = np.empty(len(x), EVENTS_DTYPE)
    out["x"], out["y"], out["p"], out["t"] = x, y, p, t
    return out


EDGE_EVENTS = events(
    x=[0, 33, 5, 17, 33],
    y=[0, 33, 6, 20, 0],
    p=[0, 1, 1, 0, 1],
    t=[0, 65_535, 65_536, 300_123, 2**23 - 1],  # across the 16-bit boundary, up to 23 bits
)


@pytest.mark.shared
def test_real_slice_labels_from_folders():
    folder = shared_path("data", "nmnist-small")
    refs = NMNIST().index(folder)
    on_disk = Counter(int(path.parent.name) for path in folder.glob("Train/*/*.bin"))
    assert len(refs) == 1000 == sum(on_disk.values())
    assert Counter(ref.label for ref in refs) == on_disk
    assert all(ref.sample_id.split("/")[1] == str(ref.label) for ref in refs)
    assert {ref.split for ref in refs} == {"train"}

    some = refs[::97]
    for ref, ev in zip(some, NMNIST().load(folder, some), strict=True):
        assert ev.dtype == EVENTS_DTYPE
        assert len(ev) == (folder / ref.locator).stat().st_size // 5  # no overflow records
        assert 1000 < len(ev) < 10_000  # about 4,000 events in ~300 ms
        assert ev["x"].max() <= 33 and ev["y"].max() <= 33 and ev["x"].min() >= 0
        assert set(np.unique(ev["p"])) == {0, 1}
        assert 250_000 < ev["t"].max() < 330_000 and np.all(np.diff(ev["t"]) >= 0)


@pytest.mark.shared
def test_real_slice_stabilised_stays_on_the_grid():
    folder = shared_path("data", "nmnist-small")
    refs = NMNIST().index(folder)[:20]
    raw = list(NMNIST().load(folder, refs))
    stable = list(NMNIST(stabilize=True).load(folder, refs))
    for before, after in zip(raw, stable, strict=True):
        assert 0.9 * len(before) < len(after) <= len(before)
        assert after["x"].min() >= 0 and after["x"].max() <= 33
        assert after["y"].min() >= 0 and after["y"].max() <= 33
    assert NMNIST(stabilize=True).facts.note and not NMNIST().facts.note


def test_decoding_is_exact_across_the_timestamp_bits():
    ev = EDGE_EVENTS
    np.testing.assert_array_equal(decode(nmnist_bytes(ev["x"], ev["y"], ev["p"], ev["t"]), "f"), ev)


def test_empty_file_is_a_sample_without_events(tmp_path):
    (tmp_path / "Train" / "4").mkdir(parents=True)
    (tmp_path / "Train" / "4" / "00001.bin").write_bytes(b"")
    refs = NMNIST().index(tmp_path)
    assert [(ref.sample_id, ref.label, ref.split) for ref in refs] == [
        ("Train/4/00001.bin", 4, "train")
    ]
    (ev,) = NMNIST(stabilize=True).load(tmp_path, refs)
    assert len(ev) == 0 and ev.dtype == EVENTS_DTYPE


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (nmnist_bytes([1], [2], [1], [3]) + b"\x01\x02", "7 bytes"),
        (nmnist_bytes([34], [2], [1], [3]), "x=34"),
        (nmnist_bytes([1, 1], [2, 2], [1, 1], [300, 200]), "t=200 us after t=300 us"),
    ],
)
def test_broken_files_name_themselves(tmp_path, data, match):
    path = tmp_path / "Test" / "7" / "00009.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    with pytest.raises(BadInputError, match=match) as err:
        list(NMNIST().load(tmp_path, NMNIST().index(tmp_path)))
    assert err.value.path == str(path)


def write_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_official_zip_is_read_in_place_like_the_folder(tmp_path):
    one = nmnist_bytes([1, 2], [3, 4], [0, 1], [10, 70_000])
    two = nmnist_bytes([5], [6], [1], [20])
    write_zip(
        tmp_path / "train.zip",
        {
            "Train/": b"",
            "Train/3/": b"",
            "Train/3/00001.bin": one,
            "Train/8/00002.bin": two,
            "Train/readme.txt": b"not a sample",
            "__MACOSX/Train/3/._00001.bin": b"resource fork",
        },
    )
    write_zip(tmp_path / "test.zip", {"Test/0/00005.bin": two})
    refs = NMNIST().index(tmp_path)
    assert [(r.sample_id, r.label, r.split) for r in refs] == [
        ("Train/3/00001.bin", 3, "train"),
        ("Train/8/00002.bin", 8, "train"),
        ("Test/0/00005.bin", 0, "test"),
    ]
    assert refs[0].locator == "train.zip#Train/3/00001.bin"
    loaded = list(NMNIST().load(tmp_path, refs))
    np.testing.assert_array_equal(loaded[0], decode(one, "one"))
    np.testing.assert_array_equal(loaded[2], decode(two, "two"))
    assert not (tmp_path / "Train").exists()  # nothing extracted

    # the zip itself is a source too, with the same sample ids
    assert [r.sample_id for r in NMNIST().index(tmp_path / "test.zip")] == ["Test/0/00005.bin"]


def test_unpacked_folder_wins_over_its_zip(tmp_path):
    write_zip(tmp_path / "train.zip", {"Train/1/00001.bin": b""})
    (tmp_path / "Train" / "2").mkdir(parents=True)
    (tmp_path / "Train" / "2" / "00002.bin").write_bytes(b"")
    assert [r.locator for r in NMNIST().index(tmp_path)] == ["Train/2/00002.bin"]


@pytest.mark.parametrize(
    "name",
    ["../evil.bin", "/abs/evil.bin", "Train/../../evil.bin", "C:/evil.bin", "Train\\..\\evil.bin"],
)
def test_zip_with_path_traversal_is_refused(tmp_path, name):
    archive = write_zip(tmp_path / "train.zip", {"Train/1/00001.bin": b"", name: b""})
    with pytest.raises(BadInputError, match="path traversal") as err:
        NMNIST().index(tmp_path)
    assert err.value.path == str(archive)
    assert not (tmp_path.parent / "evil.bin").exists() and not (tmp_path / "evil.bin").exists()


def test_no_samples_or_no_such_source(tmp_path):
    with pytest.raises(BadInputError, match="no N-MNIST"):
        NMNIST().index(tmp_path)
    with pytest.raises(BadInputError, match="no such"):
        NMNIST().index(tmp_path / "missing")
    (tmp_path / "Train" / "x").mkdir(parents=True)
    (tmp_path / "Train" / "x" / "1.bin").write_bytes(b"")
    with pytest.raises(BadInputError, match="digit folder"):
        NMNIST().index(tmp_path)


# The camera's displacement (px) at times where the reference's piecewise-linear saccade motion
# (spec 2.3: 105 ms moves of (+3.5, +7), (+3.5, -7), (-7, 0)) is a whole number of pixels.
MOTION = {
    0: (0, 0),
    30_000: (1, 2),
    60_000: (2, 4),
    90_000: (3, 6),  # first move
    120_000: (4, 6),
    150_000: (5, 4),
    180_000: (6, 2),  # second
    225_000: (6, 0),
    300_000: (1, 0),
    315_000: (0, 0),
}  # third, back home


def test_stabilisation_removes_the_known_saccade_motion():
    t = np.array(list(MOTION))
    dx, dy = np.array(list(MOTION.values())).T
    seen = events(x=10 + dx, y=12 + dy, p=t % 2, t=t)  # a still point, seen through the motion
    still = stabilize(seen)
    assert still["x"].tolist() == [10] * len(t) and still["y"].tolist() == [12] * len(t)
    np.testing.assert_array_equal(still["t"], t)
    np.testing.assert_array_equal(still["p"], seen["p"])


def test_stabilisation_rounds_like_matlab_and_drops_what_leaves_the_grid():
    seen = events(
        x=[10, 0, 33, 33],
        y=[12, 20, 20, 20],
        p=[1, 1, 1, 0],
        # 15 ms: shift (0.5, 1) -> x 10.5 rounds away from zero to 11 (1-based), i.e. 10;
        # 60 ms: x 0 - 2 leaves the grid; 330 ms: the third move continues, x 33 + 1 leaves it;
        # 315 ms: no shift.
        t=[15_000, 60_000, 330_000, 315_000],
    )
    still = stabilize(seen)
    assert list(zip(still["x"].tolist(), still["y"].tolist(), strict=True)) == [(10, 11), (33, 20)]


def test_flips_in_a_bin_file_that_break_its_rules_are_caught_others_are_not(tmp_path):
    """A `.bin` has no checksum: a flip is caught only where it breaks the format's rules (x, y
    below 34, time order). A flipped polarity bit, a low bit of x or y, or a cut at an event
    boundary leaves a valid file of other events: undetectable."""
    data = nmnist_bytes([1, 2, 3], [4, 5, 6], [0, 1, 0], [100, 200, 300])
    caught = {
        "x high bit": (0, 0x80),
        "y high bit": (6, 0x40),
        "time, high byte": (7, 0x01),
        "time, low byte": (9, 0x80),
    }
    for what, (at, mask) in caught.items():
        changed = bytearray(data)
        changed[at] ^= mask
        with pytest.raises(BadInputError, match="x=|y=|time order"):
            decode(bytes(changed), what)
    undetectable = {"polarity": (7, 0x80), "x low bit": (5, 0x01), "y low bit": (1, 0x01)}
    for at, mask in undetectable.values():
        changed = bytearray(data)
        changed[at] ^= mask
        assert not np.array_equal(decode(bytes(changed), "f"), decode(data, "f"))
    assert len(decode(data[:10], "f")) == 2


def zip_of_two(path):
    """A deflated zip of two samples with directory entries, as the official zips hold them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Train/", b"")
        archive.writestr("Train/3/", b"")
        archive.writestr(
            "Train/3/00001.bin", nmnist_bytes([1, 2, 3], [4, 5, 6], [0, 1, 0], [1, 2, 3])
        )
        archive.writestr("Train/5/00002.bin", nmnist_bytes([7, 8], [9, 10], [1, 1], [5, 6]))
    return path


def read_all(source):
    refs = NMNIST().index(source)
    events = list(NMNIST().load(source, refs))
    return [(r.sample_id, r.label, r.split) for r in refs], [e.tobytes() for e in events]


def test_every_flipped_byte_of_a_zip_is_caught_or_changes_nothing(tmp_path):
    """Members are checked by their CRC-32 when read; the directory by its entry count and by
    each unread entry's local header. So any flipped byte is refused naming the zip (or the zip
    and member), or changes nothing read (a time stamp, an attribute, a flag zipfile ignores)."""
    archive = zip_of_two(tmp_path / "train.zip")
    intact = archive.read_bytes()
    expected = read_all(tmp_path)
    unchanged = 0
    for at in range(len(intact)):
        for mask in (0x01, 0x80):
            changed = bytearray(intact)
            changed[at] ^= mask
            archive.write_bytes(bytes(changed))
            try:
                found = read_all(tmp_path)
            except BadInputError as err:
                assert err.path.startswith(str(archive)), at
                continue
            assert found == expected, at
            unchanged += 1
    assert 0 < unchanged < len(intact)


def test_a_truncated_zip_a_bad_crc_and_a_lost_entry_name_the_zip(tmp_path):
    archive = zip_of_two(tmp_path / "train.zip")
    intact = archive.read_bytes()
    archive.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(BadInputError, match="unreadable zip") as err:
        NMNIST().index(tmp_path)
    assert err.value.path == str(archive)

    crc = bytearray(intact)
    last_entry = intact.rfind(b"PK\x01\x02")  # the directory's entry of Train/5/00002.bin
    crc[last_entry + 16] ^= 0x01  # its CRC-32, which zipfile checks the member against
    archive.write_bytes(bytes(crc))
    with pytest.raises(BadInputError, match="Bad CRC-32") as err:
        list(NMNIST().load(tmp_path, NMNIST().index(tmp_path)))
    assert err.value.path == f"{archive}#Train/5/00002.bin"

    count = bytearray(intact)
    count[intact.rfind(b"PK\x05\x06") + 10] += 1  # the end record declares 5 entries
    archive.write_bytes(bytes(count))
    with pytest.raises(BadInputError, match="4 entries in the central directory") as err:
        NMNIST().index(tmp_path)
    assert err.value.expected == "5, as it declares"


def test_a_zip64_end_record_declares_the_count(tmp_path, monkeypatch):
    """From 65,535 entries on, the end record's count is full (0xFFFF) and the zip64 end record
    holds it."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # zipfile then writes zip64 records
    archive = zip_of_two(tmp_path / "train.zip")
    data = bytearray(archive.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = b"\xff" * 4  # both counts full, as with 65,535 entries
    archive.write_bytes(bytes(data))
    assert [r.sample_id for r in NMNIST().index(archive)] == [
        "Train/3/00001.bin",
        "Train/5/00002.bin",
    ]
    data[data.rfind(b"PK\x06\x06") + 32] += 1  # the zip64 end record's total: 5
    archive.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="4 entries in the central directory"):
        NMNIST().index(archive)


def test_skip_bad_lists_what_the_index_refuses_and_goes_on(tmp_path):
    (tmp_path / "Train" / "x").mkdir(parents=True)
    (tmp_path / "Train" / "x" / "1.bin").write_bytes(b"")
    (tmp_path / "Train" / "2").mkdir()
    (tmp_path / "Train" / "2" / "2.bin").write_bytes(b"")
    archive = zip_of_two(tmp_path / "test.zip")
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(BadInputError, match="digit folder"):
        NMNIST().index(tmp_path)
    index = NMNIST().index(tmp_path, skip_bad=True)
    assert [ref.sample_id for ref in index] == ["Train/2/2.bin"]
    assert [(s.path, s.sample_ids) for s in index.skipped] == [
        (str(tmp_path / "Train" / "x" / "1.bin"), ()),
        (str(archive), ()),
    ]
