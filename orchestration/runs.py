"""`hm2bp runs`: the runs of one MLflow experiment side by side.

A sweep leaves dozens of runs whose configs differ in a few keys; the table shows only the params
that differ, the final and best value of the chosen metrics (best = lowest for losses, highest for
the rest, since the reference reported the best test accuracy over epochs, spec section 7), and the
duration, sorted by one chosen metric. Parent runs of sweeps (they hold no per-epoch metrics) are
listed only when they have metrics of their own.

The store does the filtering (`search_runs` with `tags.mlflow.parentRunId` for one sweep's
children, or any MLflow filter string), and a run's final values come with the search
(`run.data.metrics` holds each metric's latest value). Only the "best" of a shown metric needs its
history, so `get_metric_history` is called for those metrics of the runs found and nothing else:
a sweep's runs log some 40 metrics each, which made the table one request per run and metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

_PAGE = 1000  # runs per search request (an MLflow server answers at most 50,000)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    status: str
    seconds: float | None
    params: dict[str, str]
    final: dict[str, float]  # every metric's latest value
    best: dict[str, float]  # of the metrics asked for only
    parent_run_id: str | None = None
    histories: dict[str, list[float]] = field(default_factory=dict, repr=False)


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric or metric.endswith("seconds")


def _row(client: MlflowClient, run, metrics: Sequence[str]) -> RunRow:
    histories = {
        key: [
            m.value
            for m in sorted(
                client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)
            )
        ]
        for key in metrics
        if key in run.data.metrics
    }
    best = {
        key: (min(values) if _lower_is_better(key) else max(values))
        for key, values in histories.items()
        if values
    }
    end, start = run.info.end_time, run.info.start_time
    return RunRow(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id[:8],
        status=run.info.status,
        seconds=(end - start) / 1000 if end and start else None,
        params=dict(run.data.params),
        final=dict(run.data.metrics),
        best=best,
        parent_run_id=run.data.tags.get("mlflow.parentRunId"),
        histories=histories,
    )


def search_filter(parent_run_id: str | None = None, filter_string: str | None = None) -> str:
    """The MLflow filter string of a parent's children and/or the user's own filter."""
    clauses = [f"tags.mlflow.parentRunId = '{parent_run_id}'"] if parent_run_id else []
    if filter_string:
        clauses.append(filter_string)
    return " and ".join(clauses)


def collect_runs(
    tracking_uri: str,
    experiment: str,
    sort_by: str = "val_accuracy",
    metrics: Sequence[str] = ("val_loss",),
    parent_run_id: str | None = None,
    filter_string: str | None = None,
) -> list[RunRow]:
    """Runs of `experiment` that logged metrics (the children of `parent_run_id` only, and only
    those `filter_string` selects, MLflow's search syntax), best `sort_by` first (runs lacking it
    last); the best value and history of `sort_by` and `metrics` only."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(
            f"experiment {experiment!r} not found in {tracking_uri} (experiments there: {names})"
        )
    shown = list(dict.fromkeys([sort_by, *metrics]))
    where = search_filter(parent_run_id, filter_string)
    runs, token = [], None
    while True:
        try:
            page = client.search_runs(
                [found.experiment_id],
                filter_string=where,
                order_by=["attributes.start_time ASC"],
                max_results=_PAGE,
                page_token=token,
            )
        except MlflowException as err:
            if err.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise ValueError(
                f"filter {where!r}: {err.message} (expected MLflow's search syntax, e.g. "
                "\"params.seed = '0' and metrics.val_accuracy > 0.9\")"
            ) from None
        runs += [_row(client, run, shown) for run in page if run.data.metrics]
        token = page.token
        if not token:
            break
    sign = 1.0 if _lower_is_better(sort_by) else -1.0
    return sorted(
        runs, key=lambda r: (sort_by not in r.best, sign * r.best.get(sort_by, 0.0), r.name)
    )


def differing_params(rows: Sequence[RunRow]) -> list[str]:
    """Param keys whose values are not the same in every row (absent counts as a value)."""
    keys = sorted({key for row in rows for key in row.params})
    return [key for key in keys if len({row.params.get(key) for row in rows}) > 1]


def format_table(rows: Sequence[RunRow], metrics: Sequence[str]) -> str:
    """A plain-text table: run, differing params, final/best of `metrics`, duration."""
    params = differing_params(rows)
    header = ["run", *params]
    for metric in metrics:
        header += [f"{metric} final", f"{metric} best"]
    header += ["seconds", "status"]
    body = []
    for row in rows:
        cells = [row.name, *(row.params.get(key, "-") for key in params)]
        for metric in metrics:
            cells += [_number(row.final.get(metric)), _number(row.best.get(metric))]
        cells += [_number(row.seconds, 1), row.status]
        body.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *body, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
        for cells in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_runs(rows: Sequence[RunRow], metric: str, path: Path) -> Path:
    """Learning curves of `metric` for every run on one axis, written to `path` (png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        values = row.histories.get(metric)
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", label=row.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rows_record(rows: Sequence[RunRow]) -> dict[str, Any]:
    """`hm2bp runs --json`'s object: the differing params and each run without its metric
    histories."""
    runs = []
    for row in rows:
        data = asdict(row)
        data.pop("histories")
        runs.append(data)
    return {"differing_params": differing_params(rows), "runs": runs}
