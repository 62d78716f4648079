"""One conversion task's loading: bad files cost only their own samples, whichever way a reader
fails. (No Ray here: the task body runs inline.)"""

from dataclasses import dataclass

import pytest
from hm2bp.pipelines.convert_task import load_payloads
from hm2bp.pipelines.errors import BadInputError
from hm2bp.tests.tiny_readers import TinyImages


@dataclass(frozen=True)
class FailsAhead(TinyImages):
    """Checks every file of a call before yielding anything, as a reader of one big file would."""

    def load(self, source, refs):
        for ref in refs:
            if ref.sample_id in self.bad:
                raise BadInputError(f"{ref.sample_id}.img", "bad header", "magic 2051")
        return super().load(source, refs)


@pytest.mark.parametrize("reader_type", [TinyImages, FailsAhead])
def test_only_the_bad_samples_are_skipped(reader_type):
    reader = reader_type(n=8, bad=("img002", "img006"))
    loaded, skipped = load_payloads(reader, None, reader.index(None), skip_bad=True)
    assert [ref.sample_id for ref, _ in loaded] == [
        "img000",
        "img001",
        "img003",
        "img004",
        "img005",
        "img007",
    ]
    assert [(s.path, s.sample_ids) for s in skipped] == [
        ("img002.img", ("img002",)),
        ("img006.img", ("img006",)),
    ]
    with pytest.raises(BadInputError, match="img002.img"):
        load_payloads(reader, None, reader.index(None), skip_bad=False)


def test_a_reader_that_yields_too_few_payloads_is_refused():
    class Short(TinyImages):
        def load(self, source, refs):
            return iter([])

    with pytest.raises(ValueError, match=r"Short.load: 0 payloads for 3 refs"):
        load_payloads(Short(n=3), None, Short(n=3).index(None), skip_bad=False)
