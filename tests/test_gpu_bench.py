"""`bench/gpu_bench.py --smoke` on the CPU: every engine's step runs and lands in the table (the
Triton backend through Triton's interpreter, see tests/conftest.py). SpikingJelly and snnTorch are
not project dependencies: where they are not installed, their rows must say so."""

from __future__ import annotations

import importlib.util
import sys

from hm2bp.tests.conftest import PROJECT_ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_smoke_benchmark_table(tmp_path):
    bench = load_script("gpu_bench")
    out = tmp_path / "gpu_bench.md"
    rows = bench.main(["--smoke", "--device", "cpu", "--out", str(out)])
    assert len(rows) == len(bench.SMOKE_CASES) * len(bench.ENGINES)
    for row in rows:
        installed = row.engine.startswith("hm2bp") or importlib.util.find_spec(row.engine)
        if installed:
            assert row.note == "" and row.samples_per_s > 0 and row.ms_per_step > 0, row
        else:
            assert row.note == f"{row.engine} not installed" and row.samples_per_s is None
    lines = out.read_text().splitlines()
    assert lines[0].startswith("Device: cpu. Python")
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 2 + len(rows)  # header and rule, then one line per row
    assert "| 64-16-4 | 24 | 3 | hm2bp-triton |" in out.read_text()


def test_ratios_refer_to_spikingjelly_of_the_same_case():
    bench = load_script("gpu_bench")
    case = bench.SMOKE_CASES[0]
    rows = [
        bench.Row(case, "hm2bp-triton", 300.0, 1.0, 100.0),
        bench.Row(case, "spikingjelly", 100.0, 3.0, 400.0),
        bench.Row(bench.SMOKE_CASES[1], "snntorch", note="snntorch not installed"),
    ]
    lines = bench.table(rows).splitlines()
    assert "| 3.00x | 0.25x |" in lines[2]
    assert "| 1.00x | 1.00x |" in lines[3]
    assert lines[4].endswith("| - | - | snntorch not installed |")


def test_smoke_profile_table(tmp_path):
    profile = load_script("gpu_profile")
    out = tmp_path / "gpu_profile.txt"
    text = profile.main(["--smoke", "--backend", "reference", "--rows", "40", "--out", str(out)])
    assert out.read_text() == text
    assert text.startswith("hm2bp 64-16-4, T=24, B=2, backend reference, cpu")
    assert "_HM2BPGradientBackward" in text  # the HM2-BP backward is inside the profiled step
