"""The Triton kernels compile for the H100/H200 (sm_90) without a GPU, and the compiled scan keeps
the reference's rounding: no fused multiply-add, no approximate division (spec section 8.11).

`triton.compile` with an explicit `GPUTarget` needs no driver; it runs in a fresh interpreter with
`TRITON_INTERPRET=0`, because the tests' own process decorates the kernels for the interpreter.
`HM2BP_EXTRA_TRITON=<folder>` adds a run with another Triton first on the path, e.g. the GPU
machine's 3.6:
`pip install --no-deps --target /tmp/triton36 triton==3.6.0` (see docs/gpu.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="Triton is not installed")

COMPILE = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from hm2bp.kernels import triton_grad, triton_scan, triton_traces
from hm2bp.kernels.triton_launch import launch_options

target = GPUTarget("cuda", 90, 32)
found = {}
for dtype in ("fp32", "fp64"):
    pointers = {name: "*" + dtype for name in
                ("current", "spikes", "counts", "k_main", "k_m", "k_s", "params")}
    for window, lateral in ((True, False), (False, True)):
        block = 16 if lateral else 256
        constants = {"REFRACTORY": 2, "FIRST_START": 1, "LOOK_BACK": 256,
                     "HAS_LATERAL": lateral, "WINDOW": window, "DIVIDE": False,
                     "SKIP_SILENT": False, "BLOCK": block}
        signature = {**pointers, "T": "i32", "B": "i32", "N": "i32",
                     **{name: "constexpr" for name in constants}}
        source = ASTSource(triton_scan.lif_scan_fwd_kernel, signature, constexprs=constants)
        options = {k: v for k, v in launch_options(block).items()}
        kernel = triton.compile(source, target=target, options=options)
        found[f"scan-{dtype}-window={window}-lateral={lateral}"] = kernel.asm["ptx"]
    signature = {"x": "*" + dtype, "out": "*" + dtype, "decay_ptr": "*" + dtype,
                 "T": "i32", "M": "i32", "BLOCK": "constexpr"}
    source = ASTSource(triton_traces.exp_trace_fwd_kernel, signature, constexprs={"BLOCK": 256})
    kernel = triton.compile(source, target=target, options=launch_options(256))
    found[f"trace-{dtype}"] = kernel.asm["ptx"]
    signature = {"traces": "*" + dtype, "values": "*" + dtype, "rows": "*i64", "offsets": "*i64",
                 "out": "*" + dtype, "N_IN": "i32", "BLOCK": "constexpr"}
    source = ASTSource(triton_grad.gather_grad_kernel, signature, constexprs={"BLOCK": 256})
    kernel = triton.compile(source, target=target, options=launch_options(256))
    found[f"grad-{dtype}"] = kernel.asm["ptx"]
found["version"] = triton.__version__
json.dump(found, sys.stdout)
"""


EXTRA = os.environ.get("HM2BP_EXTRA_TRITON")


@pytest.mark.parametrize("triton_path", [None, EXTRA] if EXTRA else [None], ids=str)
def test_kernels_compile_for_sm90_without_fma_or_approximate_division(triton_path, tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    if triton_path:
        path = os.pathsep.join(filter(None, [triton_path, env.get("PYTHONPATH")]))
        env.update(PYTHONPATH=path, TRITON_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ptx = json.loads(done.stdout)
    version = ptx.pop("version")
    if triton_path:
        assert not version.startswith("3.9"), f"{triton_path} did not take precedence"
    assert len(ptx) == 8
    for name, text in ptx.items():
        assert ".target sm_90" in text, name
        assert "div.full" not in text and "div.approx" not in text, name
        # In float64, libdevice's exp (for K) is a polynomial written with explicit FMAs; the
        # float32 scan uses ex2.approx, so any FMA there would be a contraction of ours.
        if name.startswith("scan-fp32"):
            assert "fma.rn" not in text, f"{name}: FMA contraction changes the reference's rounding"
    # No block-wide synchronisation per step where no row reduction is needed (no lateral).
    assert "bar.sync" not in ptx["scan-fp32-window=True-lateral=False"]
    # The trace step is one explicit FMA, rounded once like torch.add(x, X, alpha=decay).
    assert "fma.rn.f32" in ptx["trace-fp32"]
    # The state stays in registers: the scan's loop body loads one current per neuron and step.
    assert "mul.rn.f32" in ptx["scan-fp32-window=True-lateral=False"]
