"""Engine benchmark on the CPU: one training step of the MNIST MLP (784-800-10, T = 400) with the
factorised HM2-BP engine, beside the literal per-pair S-PSP and a surrogate-gradient BPTT network.

    .venv/bin/python bench/engine_cpu.py            # B = 1 and B = 32, 3 repeats each
    .venv/bin/python bench/engine_cpu.py --quick    # 1 repeat, fewer timed pairs

- **HM2-BP, factorised** (`hm2bp.kernels.Network`, reference backend, float32): forward, HM2-BP
  backward through the traces of spec section 3.2 with the window emulation, Adam step. Reference
  MLP settings: hidden nu 20, output nu 8, lambda 10, beta 0.04, lateral inhibition 1.
- **HM2-BP, literal per-pair S-PSP** (B = 1): the engine's forward, then e_{i|j} for every (post,
  pre) pair as the reference defines it (spec section 3.1), with the Python oracle of the tests
  (`hm2bp.tests.spsp_oracle`). A fixed random subset of pairs of each layer is timed and the time
  is extrapolated to all 800*784 + 10*800 pairs: the full loop takes hours. It measures the
  per-pair formulation in Python, not the reference's CUDA kernel.
- **Surrogate-gradient BPTT** (plain torch autograd): the same neuron model (spec section 1.1:
  multiplicative decay, one-step input lag, refractory clamp, lateral inhibition in the output),
  the same shape and loss (dead-zone squared count error), fast-sigmoid surrogate, Adam step.

Each method runs in a fresh process; peak memory is the rise of its peak resident set (VmHWM) over
the steps above its resident set once inputs, weights and optimiser exist, so it counts what a step
allocates. The literal per-pair row reuses the engine's forward and adds the timed S-PSP pairs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hm2bp.kernels.network import Network
from hm2bp.kernels.schedule import build_optimizer
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants, TargetSpec
from hm2bp.tests.spsp_oracle import spsp_pair

STEPS = 400
N_IN, N_HIDDEN, N_OUT = 784, 800, 10
SPEC = NetworkSpec(
    input_shape=(N_IN,),
    layers=(
        LayerSpec("fc", NeuronConstants(threshold=20.0), size=N_HIDDEN),
        LayerSpec("output", NeuronConstants(threshold=8.0), size=N_OUT),
    ),
    reg_lambda=10.0,
    reg_beta=0.04,
)


def mnist_like(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rate-coded stand-ins of MNIST digits (spec 2.1): about 150 of 784 pixels lit, grey levels
    as in MNIST, p = pixel / (5.5 * 255) per step, no spike at t = 0."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((batch, N_IN))
    for b in range(batch):
        lit = rng.choice(N_IN, size=150, replace=False)
        pixels[b, lit] = rng.choice([128.0, 200.0, 255.0], size=150, p=[0.2, 0.2, 0.6])
    draws = rng.random((STEPS, batch, N_IN)) < pixels / (5.5 * 255)
    draws[0] = False
    return torch.from_numpy(draws.astype(np.uint8)), torch.from_numpy(rng.integers(0, 10, batch))


def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def measure(kind: str, batch: int, repeats: int, threads: int) -> tuple[float, float]:
    """(median seconds, peak MiB) of one training step of `kind` ("engine" or "bptt"), in a fresh
    process so that no other method's freed memory hides this one's peak."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure_here, (kind, batch, repeats, threads))


def _measure_here(kind: str, batch: int, repeats: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    step = (engine_step if kind == "engine" else bptt_step)(batch)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    before, _ = memory_kib()
    step()  # warm-up: allocator, first-touch pages, lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times), (memory_kib()[1] - before) / 1024


def engine_step(batch: int) -> Callable[[], None]:
    net = Network(SPEC, seed=0)
    optimizer = build_optimizer(net)
    spikes, labels = mnist_like(batch)

    def step() -> None:
        optimizer.zero_grad()
        net(spikes, labels).loss.backward()
        optimizer.step()

    return step


class Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate derivative 1 / (1 + |x| / scale)^2 backward."""

    @staticmethod
    def forward(ctx, x, scale):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (1 + x.abs() / ctx.scale) ** 2, None


def bptt_scan(current: torch.Tensor, neuron: NeuronConstants, lateral: float) -> torch.Tensor:
    """Spec 1.1's neuron, differentiable: the spike is the surrogate, the refractory clamp and the
    reset multiply v by (non-differentiated) masks."""
    steps, batch, n = current.shape
    v = current.new_zeros(batch, n)
    a = current.new_zeros(batch, n)
    ref = torch.zeros(batch, n)
    spikes = [current.new_zeros(batch, n)]
    for t in range(1, steps):
        drive = current[t - 1]
        if lateral:
            drive = drive - lateral * (spikes[-1].sum(1, keepdim=True) - spikes[-1])
        a = a * (1 - 1 / neuron.tau_s) + drive
        v = v * (1 - 1 / neuron.tau_m) + a / neuron.tau_s
        v = v * (ref == 0)
        ref = (ref - 1).clamp(min=0)
        s = Spike.apply(v - neuron.threshold + 1e-6, neuron.threshold / 4)
        fired = s.detach() > 0
        ref = torch.where(fired, float(neuron.refractory), ref)
        v = v * (1 - s.detach())
        spikes.append(s)
    return torch.stack(spikes)


def bptt_step(batch: int) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    w1 = torch.nn.Parameter(torch.rand(N_HIDDEN, N_IN, generator=gen) * 2 - 1)
    w2 = torch.nn.Parameter(torch.rand(N_OUT, N_HIDDEN, generator=gen) * 2 - 1)
    optimizer = torch.optim.Adam([w1, w2], lr=1e-3)
    spikes, labels = mnist_like(batch)
    x = spikes.float()
    targets = TargetSpec()
    y = torch.full((batch, N_OUT), targets.undesired)
    y[torch.arange(batch), labels] = targets.desired

    def step() -> None:
        optimizer.zero_grad()
        hidden = bptt_scan(x @ w1.T, SPEC.layers[0].neuron, 0.0)
        out = bptt_scan(hidden @ w2.T, SPEC.layers[1].neuron, SPEC.lateral_strength)
        error = out.sum(0) - y
        loss = (error.square() * (error.abs() > targets.margin)).sum(1).mean()
        loss.backward()
        optimizer.step()

    return step


def literal_spsp_seconds(pairs: int, seed: int = 0) -> tuple[float, float, int, dict]:
    """(extrapolated seconds for all pairs, seconds timed, pairs timed, activity stats) of the
    per-pair S-PSP of one B = 1 sample, on the engine's own forward rasters."""
    net = Network(SPEC, seed=0)
    spikes, _ = mnist_like(1)
    with torch.no_grad():
        out = net(spikes)
    rasters = [spikes[:, 0]] + [s[:, 0] for s in out.spikes]
    rng = np.random.default_rng(seed)
    total, timed_seconds, timed_pairs = 0.0, 0.0, 0
    for layer, (pre, post) in enumerate(zip(rasters[:-1], rasters[1:], strict=True)):
        neuron = SPEC.layers[layer].neuron
        pre_t = [np.flatnonzero(pre[:, j].numpy()).tolist() for j in range(pre.shape[1])]
        post_t = [np.flatnonzero(post[:, i].numpy()).tolist() for i in range(post.shape[1])]
        n_pairs = len(pre_t) * len(post_t)
        chosen = rng.choice(n_pairs, size=min(pairs, n_pairs), replace=False)
        started = time.perf_counter()
        for k in chosen:
            i, j = divmod(int(k), len(pre_t))
            spsp_pair(post_t[i], pre_t[j], neuron, window=True)
        seconds = time.perf_counter() - started
        total += seconds / len(chosen) * n_pairs
        timed_seconds += seconds
        timed_pairs += len(chosen)
    return total, timed_seconds, timed_pairs, out.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2000 timed pairs per layer")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    pairs = 2000 if args.quick else 20000
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({args.threads} threads), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for batch in (1, 32):
        engine = measure("engine", batch, repeats, args.threads)
        bptt = measure("bptt", batch, repeats, args.threads)
        rows.append((f"HM2-BP factorised (this engine), B={batch}", batch, *engine))
        rows.append((f"surrogate-gradient BPTT (torch autograd), B={batch}", batch, *bptt))
        if batch == 1:
            literal, timed, n, stats = literal_spsp_seconds(pairs)
            activity = ", ".join(f"{k} {v:.2f}" for k, v in stats.items() if "/" in k)
            label = (
                f"HM2-BP literal per-pair S-PSP, B=1 (extrapolated from {n} pairs, {timed:.1f} s)"
            )
            rows.append((label, 1, literal + engine[0], float("nan")))
    print(f"# 784-800-10, T={STEPS}, float32, one training step (forward + backward + Adam)")
    print(f"# activity of the B=1 sample at the initial weights: {activity}\n")
    print("| method | B | s/step | samples/s | peak MiB | step time vs HM2-BP factorised |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, batch, seconds, peak in rows:
        reference = next(r[2] for r in rows if r[1] == batch and "factorised" in r[0])
        peak_text = "n/a" if peak != peak else f"{peak:.0f}"
        print(
            f"| {label} | {batch} | {seconds:.3g} | {batch / seconds:.3g} | {peak_text} "
            f"| {seconds / reference:.3g}x |"
        )
    print(f"\n# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
