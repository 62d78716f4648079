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


class _CountingClient(MlflowClient):
    """A real client that counts what it asks the store: runs returned, histories fetched."""

    searched: list[str] = []
    histories: list[tuple[str, str]] = []

    def search_runs(self, *args, **kwargs):
        page = super().search_runs(*args, **kwargs)
        type(self).searched += [run.info.run_name for run in page]
        return page

    def get_metric_history(self, run_id, key):
        type(self).histories.append((run_id, key))
        return super().get_metric_history(run_id, key)


def test_the_store_filters_a_parents_children_and_only_shown_histories_are_read(store, monkeypatch):
    from hm2bp.orchestration import runs

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    parent = client.create_run(experiment, run_name="parent").info.run_id
    children = []
    for n in range(3):
        child = client.create_run(
            experiment, run_name=f"child-{n}", tags={"mlflow.parentRunId": parent}
        ).info.run_id
        for key in ("val_accuracy", "val_loss", "train_loss", "lr", "epoch_seconds"):
            client.log_metric(child, key, 0.5 + n / 10, step=0)
        children.append(child)
    monkeypatch.setattr(runs, "MlflowClient", _CountingClient)
    monkeypatch.setattr(_CountingClient, "searched", [])
    monkeypatch.setattr(_CountingClient, "histories", [])

    rows = collect_runs(store, "sweep", "val_accuracy", ["val_loss"], parent_run_id=parent)
    assert [r.name for r in rows] == ["child-2", "child-1", "child-0"]
    assert sorted(_CountingClient.searched) == ["child-0", "child-1", "child-2"]  # no others
    assert sorted(_CountingClient.histories) == sorted(
        (child, key) for child in children for key in ("val_accuracy", "val_loss")
    )
    assert set(rows[0].final) == {"val_accuracy", "val_loss", "train_loss", "lr", "epoch_seconds"}
    assert rows[0].final["lr"] == pytest.approx(0.7)  # final values come with the search


def test_the_cli_passes_a_filter_to_the_store_and_names_a_bad_one(store, capsys):
    from hm2bp.orchestration.cli import main

    chosen = ["--filter", "params.`optimizer.lr` = 'low'", "--json"]
    assert main(["runs", "--experiment", "sweep", "--tracking-uri", store, *chosen]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in data["runs"]] == ["lr-low"]
    with pytest.raises(ValueError, match=r"filter 'params.nope ~ 1': .*expected MLflow's search"):
        collect_runs(store, "sweep", filter_string="params.nope ~ 1")
