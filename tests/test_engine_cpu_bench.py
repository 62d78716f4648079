"""`bench/engine_cpu.py --smoke`: every section's steps run in a spawned process and land in the
tables, an engine that is not installed says so, and the ratios compare with SpikingJelly on the
same case. SpikingJelly and snnTorch are not project dependencies, so either may be absent."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util

from hm2bp.tests.test_gpu_bench import load_script


def installed(engine: str) -> bool:
    module = importlib.import_module("snn_baselines").ENGINE_MODULES[engine]
    return module is None or importlib.util.find_spec(module) is not None


def test_smoke_benchmark_tables(tmp_path):
    bench = load_script("engine_cpu")
    out = tmp_path / "engine_cpu.md"
    report = bench.main(["--smoke", "--threads", "1", "--out", str(out)])
    assert [r.section for r in report.results] == list(bench.SMOKE_SECTIONS)
    for result in report.results:
        section = result.section
        expected = [(case, engine) for case in section.cases for engine in section.engines]
        assert [(row.case, row.engine) for row in result.rows] == expected
        for row in result.rows:
            if installed(row.engine):
                assert row.note == "" and row.samples_per_s > 0 and row.ms_per_step > 0, row
                assert row.peak_mib is not None and row.peak_mib >= 0, row
            else:
                assert row.note.endswith("not installed") and row.samples_per_s is None, row
    fc = report.results[-1].fc
    assert [t.density for t in fc] == list(bench.SMOKE_SECTIONS[-1].fc_sweep.densities)
    assert all(t.event_ms > 0 and t.dense_ms > 0 and t.note == "" for t in fc), fc

    text = out.read_text()
    assert text == report.markdown()
    assert text.startswith("Machine: ") and "torch threads per process: 1;" in text
    table_lines = [line for line in text.splitlines() if line.startswith("| ")]
    rows = sum(len(result.rows) + 2 for result in report.results)  # header and rule per table
    assert len(table_lines) == rows + 2 + len(fc)  # and the fc table
    assert "| 64-16-4 | 24 | 3 | hm2bp-cpu | Bernoulli 40 % |" in text
    # Rows come back from another process: "the same case" is the same value, not object.
    sj_lines = [line for line in table_lines if "| spikingjelly |" in line]
    assert len(sj_lines) == sum(len(result.section.cases) for result in report.results)
    if installed("spikingjelly"):
        assert all("| 1.00x | 1.00x |" in line or "| 1.00x | - |" in line for line in sj_lines)


def test_missing_engines_are_reported(monkeypatch):
    bench = load_script("engine_cpu")
    find_spec = importlib.util.find_spec
    absent = {"snntorch", "numba"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in absent else find_spec(name)
    )
    case = bench.SMOKE_SECTIONS[0].cases[0]
    processes = bench.Processes(fresh=True)  # never starts: nothing is measured
    options = bench.Options(threads=1, seconds=0.0, denormals=False)
    rows = [bench.measure_row(processes, e, case, options) for e in ("snntorch", "hm2bp-cpu")]
    assert [row.note for row in rows] == ["snntorch not installed", "numba not installed"]
    assert all(row.samples_per_s is None for row in rows)
    lines = bench.table(rows, show_input=True).splitlines()
    assert lines[2].endswith("| - | - | - | - | - | snntorch not installed |")


def test_ratios_refer_to_spikingjelly_of_the_same_case():
    bench = load_script("engine_cpu")
    at_40 = bench.SMOKE_SECTIONS[-1].cases[0]  # Bernoulli 40 %
    at_20 = dataclasses.replace(at_40, density=0.2)
    rows = [
        bench.Row(at_40, "hm2bp-cpu", 300.0, 1.0, 100.0),
        bench.Row(at_40, "spikingjelly", 100.0, 3.0, 400.0),
        bench.Row(at_20, "hm2bp-cpu", 300.0, 1.0, 100.0),
        bench.Row(at_20, "spikingjelly", 600.0, 0.5, 50.0),
    ]
    lines = bench.table(rows, show_input=True).splitlines()
    assert "| Bernoulli 40 % | 300.0 |" in lines[2] and "| 3.00x | 0.25x |" in lines[2]
    assert "| 1.00x | 1.00x |" in lines[3]
    assert "| Bernoulli 20 % | 300.0 |" in lines[4] and "| 0.50x | 2.00x |" in lines[4]


def test_the_dense_gemm_wins_from_the_last_density_it_loses_at():
    load_script("engine_cpu")  # puts bench/ on sys.path
    sweep = importlib.import_module("fc_current_sweep")
    timings = [
        sweep.FcTiming(0.01, 1.0, 9.0),
        sweep.FcTiming(0.05, 9.0, 8.0),  # noise: a lone win below the crossing
        sweep.FcTiming(0.1, 5.0, 8.0),
        sweep.FcTiming(0.2, 9.0, 8.0),
        sweep.FcTiming(0.4, 20.0, 8.0),
    ]
    assert sweep.dense_wins_from(timings) == 0.2
    assert sweep.dense_wins_from(timings[:3]) is None
    assert "faster from 20 % on" in sweep.fc_table(sweep.FcSweep(8, 4, 2, (), 1), timings)
