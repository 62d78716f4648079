"""`hm2bp runs`: the runs of one MLflow experiment side by side.

A sweep leaves dozens of runs whose configs differ in a few keys; the table shows only the params
that differ, the final and best value of every metric (best = lowest for losses, highest for the
rest, since the reference reported the best test accuracy over epochs, spec section 7), and the
duration, sorted by one chosen metric. Parent runs of sweeps (they hold no per-epoch metrics) are
listed only when they have metrics of their own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlflow import MlflowClient


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    status: str
    seconds: float | None
    params: dict[str, str]
    final: dict[str, float]
    best: dict[str, float]
    parent_run_id: str | None = None
    histories: dict[str, list[float]] = field(default_factory=dict, repr=False)


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric or metric.endswith("seconds")


def _row(client: MlflowClient, run) -> RunRow:
    histories = {
        key: [
            m.value
            for m in sorted(
                client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)
            )
        ]
        for key in run.data.metrics
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


def collect_runs(tracking_uri: str, experiment: str, sort_by: str = "val_accuracy") -> list[RunRow]:
    """Runs of `experiment` that logged metrics, best `sort_by` first (runs lacking it last)."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(
            f"experiment {experiment!r} not found in {tracking_uri} (experiments there: {names})"
        )
    runs = [
        _row(client, run)
        for run in client.search_runs([found.experiment_id], max_results=10_000)
        if run.data.metrics
    ]
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


def rows_as_json(rows: Sequence[RunRow]) -> str:
    """One JSON object: the differing params and each run without its metric histories."""
    runs = []
    for row in rows:
        data = asdict(row)
        data.pop("histories")
        runs.append(data)
    return json.dumps({"differing_params": differing_params(rows), "runs": runs})
