"""`ieee_float32`: TF32 off for matmuls and cuDNN convolutions inside, the caller's settings back
after (also after an error), and the network's forward currents computed inside it."""

from __future__ import annotations

import pytest
import torch
from hm2bp.kernels.network import Network
from hm2bp.kernels.precision import ieee_float32
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants


@pytest.fixture
def tf32_everywhere():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32"
    yield
    matmul.fp32_precision, conv.fp32_precision = saved


def settings():
    return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision


def test_ieee_inside_and_restored_after(tf32_everywhere):
    with ieee_float32():
        assert settings() == ("ieee", "ieee")
    assert settings() == ("tf32", "tf32")
    with pytest.raises(RuntimeError, match="boom"), ieee_float32():
        raise RuntimeError("boom")
    assert settings() == ("tf32", "tf32")


def test_forward_currents_are_computed_in_ieee_float32(tf32_everywhere, monkeypatch):
    spec = NetworkSpec(
        input_shape=(1, 6, 6),
        layers=(
            LayerSpec("conv", NeuronConstants(threshold=1.0), size=2, kernel=3),
            LayerSpec("output", NeuronConstants(threshold=1.0), size=3),
        ),
    )
    net = Network(spec, seed=0)
    seen = []

    def recorded(original):
        def current(*args):
            seen.append(settings())
            return original(*args)

        return current

    # The conv layer's map, and the backend's fc current that the output layer goes through.
    monkeypatch.setattr(net.layers[0], "current", recorded(net.layers[0].current))
    net.backend = net.backend._replace(fc_current=recorded(net.backend.fc_current))
    net(torch.zeros(5, 2, 1, 6, 6))
    assert seen == [("ieee", "ieee")] * 2
    assert settings() == ("tf32", "tf32")
