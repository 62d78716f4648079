"""The LIF scan as one Triton kernel: the same result as `neuron.lif_scan`, in one pass over time.

The reference (`neuron.lif_scan` + `psp_kernel.psp_kernel`) runs ~10 torch ops per time step and
then rebuilds K from the whole raster. Here one program owns a block of neurons of one sample and
keeps v, the synaptic current a, the refractory counter and the last spike time in registers for
all T steps (spec section 6.3, item 3); it reads each input current once, writes the spikes
densely and K sparsely (two entries per post-spike, six more with the 4*tau_m window emulation:
zero-initialised outputs, masked stores at t_f, read-add-write at the earlier slots r_f, q_f and
r_f - 1, which only this program touches). For the output layer one program holds the whole row,
so the lateral current -w0 * (sum_l s_l(t-1) - s_i(t-1)) is a register reduction (spec 1.2).

Spikes equal the reference's bit for bit, in float32 as in float64: the scan performs the
reference's operations in its order and rounding (spec section 8.11): every constant is rounded to
the current's dtype as torch rounds a Python scalar, and the kernel is compiled without FMA
contraction (`enable_fp_fusion=False`). One quirk is torch's, not the spec's: on CUDA, torch
divides by a Python scalar as a multiplication by its reciprocal (`div_true_kernel_cuda`), on the
CPU it divides; the kernel follows whichever the current's device does. K's exponentials use
Triton's `exp` (on the GPU the fast approximation), so K agrees to a few ulp, not bitwise.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.psp_kernel import DenseKernel, look_back
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.tensor_checks import check_float_tensor
from hm2bp.kernels.triton_launch import (
    block_size,
    check_runnable,
    interpreted,
    launch_options,
)

# Slots of the per-layer constants in the `params` vector (rounded to the current's dtype); Triton
# kernels may only read globals that are constexpr.
(
    DECAY_M,
    DECAY_S,
    TAU_S,
    INV_TAU_S,
    THRESHOLD,
    LATERAL,
    C,
    RESTART_RATE,
    INV_TAU_M,
    INV_TAU_S_EXP,
) = (tl.constexpr(slot) for slot in range(10))


@triton.jit
def _add_at(ptr, offsets, value, mask):
    """ptr[offsets] += value where mask (slots owned by this program only)."""
    tl.store(ptr + offsets, tl.load(ptr + offsets, mask=mask, other=0.0) + value, mask=mask)


# Sizes are never specialised: Triton would turn a size of 1 (batch 1) into a constexpr.
@triton.jit(do_not_specialize=["T", "B", "N"])
def lif_scan_fwd_kernel(
    current,  # [T, B, N] input current, I(t) acts at step t + 1
    spikes,  # [T, B, N] out, 0/1
    counts,  # [B, N] out
    k_main,  # [T, B, N] out, zero-initialised
    k_m,  # [T, B, N] out, zero-initialised (WINDOW only)
    k_s,  # [T, B, N] out, zero-initialised (WINDOW only)
    params,  # constants, see DECAY_M ... in the module
    T,
    B,
    N,
    REFRACTORY: tl.constexpr,
    FIRST_START: tl.constexpr,  # r_1: 1 (reference S-PSP) or 0 (physics-exact)
    LOOK_BACK: tl.constexpr,  # W = ceil(4 tau_m)
    HAS_LATERAL: tl.constexpr,
    WINDOW: tl.constexpr,
    DIVIDE: tl.constexpr,  # a / tau_s (torch on CPU) or a * (1 / tau_s) (torch on CUDA)
    SKIP_SILENT: tl.constexpr,  # test whether the block fired before writing K
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    row = b.to(tl.int64) * N + cols  # offset of (b, n) inside one time slice
    slice_size = B.to(tl.int64) * N

    decay_m = tl.load(params + DECAY_M)
    decay_s = tl.load(params + DECAY_S)
    tau_s = tl.load(params + TAU_S)
    inv_tau_s = tl.load(params + INV_TAU_S)
    threshold = tl.load(params + THRESHOLD)
    lateral = tl.load(params + LATERAL)
    c = tl.load(params + C)
    restart_rate = tl.load(params + RESTART_RATE)

    zero = tl.zeros([BLOCK], dtype=current.dtype.element_ty)
    v = zero
    a = zero
    count = zero
    previous = zero
    ref = tl.zeros([BLOCK], dtype=tl.int32)
    last = tl.full([BLOCK], -1, dtype=tl.int32)  # last spike time, -1 before the first
    tl.store(spikes + row, zero, mask=mask)  # no integration at t = 0, so s(0) = 0
    # The current of step t is loaded one iteration ahead, so its latency overlaps the arithmetic.
    upcoming = tl.load(current + row, mask=mask, other=0.0)
    for t in range(1, T):
        drive = upcoming
        upcoming = tl.load(current + t * slice_size + row, mask=mask, other=0.0)  # t <= T-1
        v = v * decay_m
        a = a * decay_s
        a = a + drive
        if HAS_LATERAL:
            a = a - lateral * (tl.sum(previous, axis=0) - previous)
        v = v + a / tau_s if DIVIDE else v + a * inv_tau_s
        refractory = ref > 0
        v = tl.where(refractory, zero, v)
        ref = ref - refractory.to(tl.int32)
        fired = (v > threshold) & mask
        s = tl.where(fired, 1.0, zero)
        tl.store(spikes + t * slice_size + row, s, mask=mask)
        ref = tl.where(fired, REFRACTORY, ref)
        v = tl.where(fired, zero, v)
        count = count + s
        previous = s

        # Under the interpreter, skip K's ~40 ops where the block did not fire (spikes are
        # sparse); compiled, masked lanes cost less than the block-wide reduction would.
        if not SKIP_SILENT or tl.max(s, axis=0) > 0:
            _kernel_entries(
                k_main,
                k_m,
                k_s,
                params,
                t,
                last,
                row,
                slice_size,
                fired,
                c,
                restart_rate,
                REFRACTORY,
                FIRST_START,
                LOOK_BACK,
                WINDOW,
            )
        last = tl.where(fired, t, last)
    tl.store(counts + row, count, mask=mask)


@triton.jit
def _kernel_entries(
    k_main,
    k_m,
    k_s,
    params,
    t,
    last,
    row,
    slice_size,
    fired,
    c,
    restart_rate,
    REFRACTORY: tl.constexpr,
    FIRST_START: tl.constexpr,
    LOOK_BACK: tl.constexpr,
    WINDOW: tl.constexpr,
):
    """K of spec section 3.2 for the spikes `fired` at step t: +c at t_f and -c exp(-s_f / tau_m)
    at the window start r_f (r_1 = FIRST_START, r_f = t_{f-1} + R), in k_main and, with the window
    emulation, also in k_m and k_s together with the window's entries."""
    start = tl.where(last >= 0, last + REFRACTORY, FIRST_START)
    start = tl.minimum(start, t)
    since = (t - start).to(k_main.dtype.element_ty)
    entry = -(c * tl.exp(since * restart_rate))
    at_t = t * slice_size + row
    at_start = start.to(tl.int64) * slice_size + row
    spike = tl.zeros_like(since) + c
    tl.store(k_main + at_t, spike, mask=fired)
    _add_at(k_main, at_start, entry, fired)
    if WINDOW:
        tl.store(k_m + at_t, spike, mask=fired)
        _add_at(k_m, at_start, entry, fired)
        tl.store(k_s + at_t, spike, mask=fired)
        _add_at(k_s, at_start, entry, fired)
        if t - LOOK_BACK > 1:  # before that, no window cuts anything off
            _window_entries(
                k_m, k_s, params, t, start, since, row, slice_size, fired, c, REFRACTORY, LOOK_BACK
            )


@triton.jit
def _window_entries(
    k_m,
    k_s,
    params,
    t,
    start,
    since,
    row,
    slice_size,
    fired,
    c,
    REFRACTORY: tl.constexpr,
    LOOK_BACK: tl.constexpr,
):
    """The excluded part X_f of spike t_f when its 4*tau_m window cuts off old pre-spikes.

    Spec section 3.2: q_f = t_f - W - 1 + R; only where t_f - W > 1; case q_f < r_f through
    Xs(q_f), case q_f >= r_f through Xm and Xs at q_f and r_f - 1 (as `psp_kernel`).
    """
    inv_tau_m = tl.load(params + INV_TAU_M)
    inv_tau_s = tl.load(params + INV_TAU_S_EXP)
    q = t - LOOK_BACK - 1 + REFRACTORY
    cut = fired & (t - LOOK_BACK > 1)
    before = cut & (q < start)
    inside = cut & (q >= start)
    h = tl.exp(-since * inv_tau_m) - tl.exp(-since * inv_tau_s)
    at_q = tl.maximum(q, 0).to(tl.int64) * slice_size + row
    at_r1 = tl.maximum(start - 1, 0).to(tl.int64) * slice_size + row
    until_q = (t - q).to(since.dtype)
    until_r = since + 1.0
    _add_at(k_s, at_q, c * h * tl.exp(-(start - q).to(since.dtype) * inv_tau_s), before)
    _add_at(k_s, at_r1, c * h * tl.exp(-inv_tau_s), inside)
    _add_at(k_m, at_q, -c * tl.exp(-until_q * inv_tau_m), inside)
    _add_at(k_m, at_r1, c * tl.exp(-until_r * inv_tau_m), inside)
    _add_at(k_s, at_q, -c * tl.exp(-until_q * inv_tau_s), inside)
    _add_at(k_s, at_r1, c * tl.exp(-until_r * inv_tau_s), inside)


def _params(
    current: torch.Tensor,
    neuron: NeuronConstants,
    slack: float,
    lateral: float,
    physics_exact: bool,
) -> torch.Tensor:
    """The scan's constants in the current's dtype, rounded as torch rounds Python scalars."""
    dtype = current.dtype
    # torch's CUDA division by a Python scalar b multiplies by 1 / b computed in the dtype.
    inv_tau_s = (torch.ones((), dtype=dtype) / torch.tensor(neuron.tau_s, dtype=dtype)).item()
    restart_rate = math.log(1.0 - 1.0 / neuron.tau_m) if physics_exact else -1.0 / neuron.tau_m
    values = {
        DECAY_M: 1.0 - 1.0 / neuron.tau_m,
        DECAY_S: 1.0 - 1.0 / neuron.tau_s,
        TAU_S: neuron.tau_s,
        INV_TAU_S: inv_tau_s,
        THRESHOLD: neuron.threshold - slack,
        LATERAL: lateral,
        C: neuron.c,
        RESTART_RATE: restart_rate,
        INV_TAU_M: 1.0 / neuron.tau_m,
        INV_TAU_S_EXP: 1.0 / neuron.tau_s,
    }
    values = [value for _, value in sorted(values.items(), key=lambda item: item[0].value)]
    return torch.tensor(values, dtype=dtype, device=current.device)


def lif_scan(
    current: torch.Tensor,
    neuron: NeuronConstants,
    slack: float,
    lateral: float = 0.0,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> ScanResult:
    """`neuron.lif_scan` on the Triton backend: same arguments, same `ScanResult`.

    `current` `[T, B, N]` float32 or float64 on CUDA (or on the CPU under `TRITON_INTERPRET=1`).
    """
    _check_arguments(current, neuron, slack, lateral)
    check_runnable(lif_scan_fwd_kernel, current, "current")
    current = current.contiguous()
    steps, batch, n = current.shape
    emulate_window = window and not physics_exact
    spikes = torch.empty_like(current)
    counts = current.new_empty(batch, n)
    k_main = torch.zeros_like(current)
    k_m = torch.zeros_like(current) if emulate_window else k_main
    k_s = torch.zeros_like(current) if emulate_window else k_main
    block = block_size(lif_scan_fwd_kernel, n, whole_row=lateral != 0.0)
    grid = (batch, triton.cdiv(n, block))
    lif_scan_fwd_kernel[grid](
        current,
        spikes,
        counts,
        k_main,
        k_m,
        k_s,
        _params(current, neuron, slack, lateral, physics_exact),
        steps,
        batch,
        n,
        REFRACTORY=neuron.refractory,
        FIRST_START=0 if physics_exact else 1,
        LOOK_BACK=look_back(neuron.tau_m),
        HAS_LATERAL=lateral != 0.0,
        WINDOW=emulate_window,
        DIVIDE=current.device.type != "cuda",
        SKIP_SILENT=interpreted(lif_scan_fwd_kernel),
        BLOCK=block,
        **launch_options(block),
    )
    # As the reference: window kernels only where the window cut something (a spike at t_f > W + 1).
    if not emulate_window or not bool(spikes[look_back(neuron.tau_m) + 2 :].any()):
        return ScanResult(spikes, counts, DenseKernel(k_main))
    return ScanResult(spikes, counts, DenseKernel(k_main, k_m, k_s))


def _check_arguments(current: object, neuron: object, slack: object, lateral: object) -> None:
    check_float_tensor("current", current, "[T, B, N]")
    if not isinstance(neuron, NeuronConstants):
        raise TypeError(f"neuron: found {type(neuron).__name__}, expected NeuronConstants")
    for name, value in (("slack", slack), ("lateral", lateral)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: found {value!r}, expected a finite number >= 0")
