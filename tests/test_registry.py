"""Readers by short name: options checked, facts follow the options, readers pickle into Ray."""

import pickle

import pytest
from hm2bp.pipelines.registry import READERS, get_reader, reader_options
from hm2bp.pipelines.source import Reader
from hm2bp.tests.conftest import PROJECT_ROOT
from hm2bp.tests.formats import wav_bytes


def test_every_name_gives_a_picklable_reader_with_its_facts(tmp_path):
    (tmp_path / "yes_ann_0.wav").write_bytes(wav_bytes([1, 2, 3], 8000))
    assert sorted(READERS) == ["digits", "emnist", "mnist", "nmnist", "ti46", "wav"]
    for name in READERS:
        reader = get_reader(name, source=tmp_path)
        assert isinstance(reader, Reader)  # has facts, index, load
        assert pickle.loads(pickle.dumps(reader)) == reader
        assert reader.facts.kind in ("image", "events", "audio") and reader.facts.classes


def test_options_shape_the_facts():
    assert get_reader("emnist", split="letters").facts.source_labels == tuple(range(1, 27))
    assert get_reader("nmnist", stabilize=True).facts.note.startswith("saccade motion removed")
    assert get_reader("ti46", vocabulary="ti20").facts.classes[-1] == "yes"
    assert get_reader("wav", classes=("no", "yes")).facts.classes == ("no", "yes")
    assert reader_options("emnist") == {"split": "balanced"}


def test_unknown_names_and_options_are_refused():
    with pytest.raises(ValueError, match="expected one of"):
        get_reader("cifar")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['stabilise'\]; options: \['stabilize'\]"
    ):
        get_reader("nmnist", stabilise=True)
    with pytest.raises(ValueError, match="give `classes` or the source"):
        get_reader("wav")


def test_the_docs_example_runs(capsys):
    text = (PROJECT_ROOT / "docs" / "datasets.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(snippet, {})
    assert capsys.readouterr().out == "digits 1797 (8, 8)\n"
