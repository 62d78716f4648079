"""scikit-learn's digits, scaled to 0..255 so that the reference's rate coding applies."""

import numpy as np
import pytest
from hm2bp.pipelines.digits import Digits
from hm2bp.pipelines.errors import BadInputError
from sklearn.datasets import load_digits


def test_all_digits_scaled_to_bytes():
    reader = Digits()
    refs = reader.index(None)
    sklearn = load_digits()
    assert len(refs) == 1797
    np.testing.assert_array_equal([ref.label for ref in refs], sklearn.target)
    images = np.stack(list(reader.load(None, refs)))
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    expected = [round(v * 255 / 16) for v in sklearn.images.ravel()]
    np.testing.assert_array_equal(images.ravel(), expected)
    assert images.max() == 255 and sorted(np.unique(images))[:3] == [0, 16, 32]
    assert "0..16" in reader.facts.note and reader.facts.input_shape == (8, 8)


def test_a_source_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="embedded"):
        Digits().index(tmp_path)
