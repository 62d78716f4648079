"""The model API: shapes and dtypes in, StepOutput out, gradients through autograd, clear errors."""

from __future__ import annotations

import weakref

import pytest
import torch
from hm2bp.kernels.network import Network
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants


def mlp(n_in=20, hidden=12, classes=3, **options) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(n_in,),
        layers=(
            LayerSpec("fc", NeuronConstants(threshold=1.0), size=hidden),
            LayerSpec("output", NeuronConstants(threshold=1.0), size=classes),
        ),
        **options,
    )


def spikes(steps=60, batch=2, n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, n, generator=gen) < 0.2).to(torch.uint8)


def test_parameters_and_init():
    net = Network(mlp(), seed=3)
    names = [name for name, _ in net.named_parameters()]
    assert names == ["layers.0.weight", "layers.1.weight"]
    w = net.layers[0].weight
    assert w.dtype == torch.float32 and w.abs().max() <= 1.0 and w.std() > 0.3
    assert torch.equal(Network(mlp(), seed=3).layers[0].weight, w)


def test_step_output_and_stats():
    net = Network(mlp(), seed=0)
    out = net(spikes(), torch.tensor([0, 2]))
    assert out.counts.shape == (2, 3) and out.predictions.shape == (2,)
    assert out.loss.shape == () and out.loss.requires_grad
    assert [tuple(s.shape) for s in out.spikes] == [(60, 2, 12), (60, 2, 3)]
    assert all(s.dtype == torch.uint8 for s in out.spikes)
    assert set(out.stats) == {
        "fc0/mean_spikes",
        "fc0/silent_fraction",
        "output/mean_spikes",
        "output/silent_fraction",
        "lateral_guard_triggers",
    }
    assert net(spikes()).loss is None


def test_a_forward_without_gradients_frees_records_and_changes_nothing(monkeypatch):
    """Validation's forward keeps nothing for a backward: a layer's current is gone when the next
    layer's is computed, and its input (the previous scan's spikes) before its own scan. Its
    outputs equal the training forward's (three layers, so a hidden layer's record is freed)."""
    spec = NetworkSpec(
        input_shape=(20,),
        layers=(
            LayerSpec("fc", NeuronConstants(threshold=1.0), size=12),
            LayerSpec("fc", NeuronConstants(threshold=1.0), size=10),
            LayerSpec("output", NeuronConstants(threshold=1.0), size=3),
        ),
    )
    net = Network(spec, seed=1)
    x, labels = spikes(batch=4, seed=2), torch.tensor([0, 2, 1, 0])
    trained = net(x, labels)
    currents, outputs = [], []
    current, scan = net._current, net._scan

    def freed_current(layer, inputs):
        assert all(ref() is None for ref in currents), "an earlier layer's current is alive"
        currents.append(weakref.ref(result := current(layer, inputs)))
        return result

    def freed_scan(layer, layer_current):
        assert all(ref() is None for ref in outputs), "this layer's input is alive"
        outputs.append(weakref.ref((result := scan(layer, layer_current)).spikes))
        return result

    monkeypatch.setattr(net, "_current", freed_current)
    monkeypatch.setattr(net, "_scan", freed_scan)
    with torch.no_grad():
        validated = net(x, labels)
    assert len(currents) == len(outputs) == 3
    assert validated.loss.grad_fn is None and trained.loss.grad_fn is not None
    assert torch.equal(validated.loss, trained.loss.detach())
    assert torch.equal(validated.counts, trained.counts)
    assert validated.stats == trained.stats and validated.stats["fc1/mean_spikes"] > 0
    assert all(torch.equal(a, b) for a, b in zip(validated.spikes, trained.spikes, strict=True))


def strict_scan(counts: list[float]) -> int:
    """Spec section 1.4: a strict ">" scan, so ties go to the lowest index, all silent to 0."""
    best = 0
    for i, count in enumerate(counts):
        if count > counts[best]:
            best = i
    return best


def test_predictions_follow_the_strict_scan():
    net = Network(mlp(classes=4), seed=1)
    with torch.no_grad():  # outputs 0 and 1 identical, output 3 silent: ties happen
        net.layers[1].weight[1] = net.layers[1].weight[0]
        net.layers[1].weight[3] = -1.0
    out = net(spikes(batch=16, seed=2))
    counts = out.counts.tolist()
    assert any(row[0] == row[1] == max(row) for row in counts)
    assert out.predictions.tolist() == [strict_scan(row) for row in counts]
    silent = net(torch.zeros(10, 1, 20)).predictions
    assert silent.tolist() == [0]


def test_spike_layouts_and_dtypes_agree():
    net = Network(mlp(), seed=0, dtype=torch.float64)
    x = spikes()
    reference = net(x).counts
    for variant in (x.bool(), x.float(), x.double()):
        assert torch.equal(net(variant).counts, reference)
    spatial = NetworkSpec((1, 4, 5), mlp().layers)
    net2 = Network(spatial, seed=0, dtype=torch.float64)
    assert torch.equal(net2(x.view(60, 2, 1, 4, 5)).counts, net2(x).counts)


def test_gradient_scales_with_the_loss_and_accumulates():
    net = Network(mlp(), seed=0, dtype=torch.float64)
    x, labels = spikes(), torch.tensor([1, 2])
    net(x, labels).loss.backward()
    once = [p.grad.clone() for p in net.parameters()]
    assert all(g.abs().sum() > 0 for g in once)
    net.zero_grad()
    (2 * net(x, labels).loss).backward()
    for p, g in zip(net.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)


def test_backward_after_an_in_place_update_is_refused():
    net = Network(mlp(), seed=0)
    out = net(spikes(), torch.tensor([0, 1]))
    with torch.no_grad():
        net.layers[0].weight.add_(0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.loss.backward()


@pytest.mark.parametrize(
    ("x", "kind", "match"),
    [
        (torch.zeros(60, 2, 21, dtype=torch.uint8), ValueError, "spikes: found shape"),
        (torch.zeros(60, 20, dtype=torch.uint8), ValueError, "spikes: found shape"),
        (torch.zeros(0, 2, 20, dtype=torch.uint8), ValueError, "spikes: found shape"),
        (torch.zeros(60, 2, 20, dtype=torch.int64), TypeError, "spikes: found dtype"),
        (torch.full((60, 2, 20), 2, dtype=torch.uint8), ValueError, "binary"),
        ([[0, 1]], TypeError, "spikes"),
    ],
)
def test_bad_spikes_are_refused(x, kind, match):
    with pytest.raises(kind, match=match):
        Network(mlp(), seed=0)(x)


@pytest.mark.parametrize(
    ("labels", "weights", "kind", "match"),
    [
        (torch.tensor([0, 3]), None, ValueError, "labels: found"),
        (torch.tensor([0]), None, ValueError, "labels: found"),
        (torch.tensor([0.0, 1.0]), None, TypeError, "labels: found dtype"),
        (torch.tensor([0, 1]), torch.tensor([1.0, -1.0]), ValueError, "sample_weights"),
        (torch.tensor([0, 1]), torch.tensor([1.0]), ValueError, "sample_weights"),
    ],
)
def test_bad_targets_are_refused(labels, weights, kind, match):
    with pytest.raises(kind, match=match):
        Network(mlp(), seed=0)(spikes(), labels, weights)


def test_bad_networks_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        LayerSpec("fc", NeuronConstants(threshold=0.0), size=3)
    with pytest.raises(ValueError, match="layers"):
        Network(NetworkSpec((4,), ()))
    with pytest.raises(ValueError, match="kernel"):
        conv = LayerSpec("conv", NeuronConstants(threshold=1.0), size=2, kernel=6)
        Network(NetworkSpec((1, 5, 5), (conv, mlp().layers[-1])))
    with pytest.raises(ValueError, match="dtype"):
        Network(mlp(), dtype=torch.float16)
    with pytest.raises(ValueError, match="backend"):
        Network(mlp(), backend="fast")
    with pytest.raises(TypeError, match="spec"):
        Network({"layers": []})
