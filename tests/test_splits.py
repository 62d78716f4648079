"""Split specs: parsed with clear errors, assigned deterministically."""

from collections import Counter

import pytest
from hm2bp.pipelines.source import SampleRef
from hm2bp.pipelines.splits import (
    GroupSplit,
    RangeSplit,
    RatioSplit,
    SourceSplit,
    default_split,
    parse_split,
)


def refs(n=100, classes=4, own=None):
    return [
        SampleRef(f"s{i}", i % classes, own(i) if own else None, i, {"speaker": f"p{i % 5}"})
        for i in range(n)
    ]


def test_specs_parse_and_print_back():
    for text in (
        "ratio:0.8",
        "range:train=0-59,val=60-79,test=80-99",
        "group:speaker=p1,p2",
        "source",
    ):
        assert parse_split(text).spec == text
    assert parse_split("ratio:0.8") == RatioSplit(0.8)
    assert parse_split("group:speaker=theo") == GroupSplit("speaker", ("theo",))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ratio:1.5", "not understood"),
        ("ratio:abc", "could not convert"),
        ("halves", "not understood"),
        ("range:train=0-9,dev=10-19", "names split 'dev'"),
        ("range:train=9-0", "not an inclusive range"),
        ("range:train=0-10,val=10-19", "overlap"),
        ("group:speaker", "not understood"),
        ("source:x", "not understood"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, says):
    with pytest.raises(ValueError, match=says) as err:
        parse_split(spec)
    assert repr(spec) in str(err.value)


def test_ratio_is_stratified_and_seeded():
    samples = refs(100, classes=4)
    split = RatioSplit(0.8)
    out = split.assign(samples, seed=1)
    per_class = Counter((ref.label, s) for ref, s in zip(samples, out, strict=True))
    assert all(per_class[(c, "train")] == 20 and per_class[(c, "val")] == 5 for c in range(4))
    assert out == split.assign(samples, seed=1) and out != split.assign(samples, seed=2)


def test_range_keeps_positions_and_drops_the_rest():
    out = parse_split("range:train=0-5,val=8-9").assign(refs(12), seed=0)
    assert out == ["train"] * 6 + [None, None] + ["val"] * 2 + [None, None]
    with pytest.raises(ValueError, match="reaches past the source's 12 samples"):
        RangeSplit((("train", 0, 12),)).assign(refs(12), seed=0)


def test_group_holds_out_the_named_values():
    samples = refs(20)
    out = parse_split("group:speaker=p3").assign(samples, seed=0)
    assert {s for ref, s in zip(samples, out, strict=True) if ref.meta["speaker"] == "p3"} == {
        "val"
    }
    assert out.count("val") == 4 and out.count("train") == 16
    with pytest.raises(ValueError, match=r"no sample has speaker='theo' \(expected one of p0, p1"):
        parse_split("group:speaker=theo").assign(samples, seed=0)
    with pytest.raises(ValueError, match="has no metadata 'gender'"):
        parse_split("group:gender=f").assign(samples, seed=0)


def test_source_and_the_default():
    own = refs(10, own=lambda i: "test" if i < 3 else "train")
    assert SourceSplit().assign(own, seed=0) == ["test"] * 3 + ["train"] * 7
    assert default_split(own) == SourceSplit()
    assert default_split(refs(10)) == RatioSplit(0.8)
    assert default_split(refs(10, own=lambda i: "train")) == RatioSplit(0.8)
    with pytest.raises(ValueError, match="has source split None"):
        SourceSplit().assign(refs(3), seed=0)
