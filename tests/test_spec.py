"""Specs refuse bad values with the field's name, what was found and what was expected."""

from __future__ import annotations

import pytest
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants, TargetSpec


def out(n=10):
    return LayerSpec("output", NeuronConstants(threshold=5.0), size=n)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: NeuronConstants(threshold=0.0), "threshold"),
        (lambda: NeuronConstants(threshold=-1.0), "threshold"),
        (lambda: NeuronConstants(threshold=float("nan")), "threshold"),
        (lambda: NeuronConstants(threshold=1.0, tau_s=64.0), "tau_s"),
        (lambda: NeuronConstants(threshold=1.0, refractory=0), "refractory"),
        (lambda: LayerSpec("dense", NeuronConstants(threshold=1.0), size=3), "kind"),
        (lambda: LayerSpec("fc", NeuronConstants(threshold=1.0)), "size"),
        (lambda: LayerSpec("conv", NeuronConstants(threshold=1.0), size=3), "kernel"),
        (lambda: TargetSpec(desired=0.0), "desired"),
        (lambda: NetworkSpec((784,), ()), "layers"),
        (lambda: NetworkSpec((784,), (LayerSpec("fc", NeuronConstants(1.0), size=3),)), "kind"),
        (lambda: NetworkSpec((784,), (out(), out())), "layers"),
        (lambda: NetworkSpec((0,), (out(),)), "input_shape"),
        (lambda: NetworkSpec((28, 28), (out(),)), "input_shape"),
        (
            lambda: NetworkSpec((784,), (LayerSpec("pool", NeuronConstants(2.0)), out())),
            "kind",
        ),
        (lambda: NetworkSpec((784,), (out(),), reg_lambda=-1.0), "reg_lambda"),
        (lambda: NetworkSpec((784,), (out(),), window=1), "window"),
    ],
)
def test_bad_values_name_their_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_defaults_are_the_reference():
    spec = NetworkSpec((1, 28, 28), (out(),))
    assert spec.n_inputs == 784 and spec.n_classes == 10
    assert spec.targets == TargetSpec(35.0, 5.0, 5.0)
    assert abs(spec.layers[0].neuron.c - 8 / 7) < 1e-15
    assert spec.window_emulated
    assert not NetworkSpec((784,), (out(),), physics_exact=True).window_emulated
