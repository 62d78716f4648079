"""`hm2bp runs`: a real SQLite MLflow store with three runs, read back and compared."""

from __future__ import annotations

import json

import pytest
from hm2bp.orchestration.runs import collect_runs, differing_params, format_table, plot_runs
from mlflow import MlflowClient


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "artifacts"))
    curves = {"lr-high": [0.80, 0.90, 0.85], "lr-low": [0.70, 0.88, 0.92], "lr-mid": [0.75, 0.8]}
    for name, accuracies in curves.items():
        run = client.create_run(experiment, run_name=name)
        client.log_param(run.info.run_id, "optimizer.lr", name.split("-")[1])
        client.log_param(run.info.run_id, "model.hidden", "800")
        for step, accuracy in enumerate(accuracies):
            client.log_metric(run.info.run_id, "val_accuracy", accuracy, step=step)
            client.log_metric(run.info.run_id, "val_loss", 1 - accuracy, step=step)
        client.set_terminated(run.info.run_id)
    client.create_run(experiment, run_name="parent-without-metrics")
    return uri


def test_runs_are_sorted_by_their_best_value_and_keep_final_and_best(store):
    rows = collect_runs(store, "sweep", sort_by="val_accuracy")
    assert [r.name for r in rows] == ["lr-low", "lr-high", "lr-mid"]
    high = rows[1]
    assert high.best["val_accuracy"] == pytest.approx(0.90)
    assert high.final["val_accuracy"] == pytest.approx(0.85)
    assert high.best["val_loss"] == pytest.approx(0.10)  # losses: lowest is best
    assert high.status == "FINISHED" and high.seconds is not None


def test_a_loss_sorts_lowest_first(store):
    assert collect_runs(store, "sweep", sort_by="val_loss")[0].name == "lr-low"


def test_only_differing_params_reach_the_table(store):
    rows = collect_runs(store, "sweep")
    assert differing_params(rows) == ["optimizer.lr"]
    table = format_table(rows, ["val_accuracy"])
    header = table.splitlines()[0]
    assert "optimizer.lr" in header and "model.hidden" not in header
    assert "0.9200" in table.splitlines()[2]


def test_comparison_plot_is_written(store, tmp_path):
    path = plot_runs(collect_runs(store, "sweep"), "val_accuracy", tmp_path / "cmp.png")
    assert path.stat().st_size > 1000


def test_an_unknown_experiment_names_the_ones_that_exist(store):
    with pytest.raises(ValueError, match=r"'nope' not found .*'sweep'"):
        collect_runs(store, "nope")


def test_cli_prints_exactly_one_json_object(store, capsys):
    from hm2bp.orchestration.cli import main

    assert main(["runs", "--experiment", "sweep", "--tracking-uri", store, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["runs"]] == ["lr-low", "lr-high", "lr-mid"]
    assert data["differing_params"] == ["optimizer.lr"]
