"""The one-command demo: scikit-learn's digits to shards, HM2-BP on Ray Train, tracked in MLflow.

`hm2bp demo` converts the 1,797 digits (embedded in scikit-learn, no download) into rate-coded
shards with Ray tasks (a stratified 80/20 split), trains `configs/demo.yaml` on 2 Ray Train
workers, logs the run to MLflow (a SQLite file in the current directory unless a tracking URI is
set) and reports the accuracy on the held-out 20 %. Everything lands under the working directory:
`shards/digits`, `runs/demo` and `mlflow.db`. A second run reuses the shards and resumes the
finished run (delete `runs/demo` to train again).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from hm2bp.orchestration.config import load_config
from hm2bp.orchestration.trainer import TrainResult, train

DEMO_SPLIT = "ratio:0.8"


def demo_config_path() -> Path:
    return Path(str(files("hm2bp.configs").joinpath("demo.yaml")))


def demo(workdir: str | Path = ".", overrides: Iterable[str] = ()) -> TrainResult:
    """Convert, train, track; `overrides` are `--set KEY=VALUE` strings for the demo config."""
    import ray
    from hm2bp.pipelines.convert import convert

    workdir = Path(workdir).absolute()
    path = demo_config_path()
    config = load_config(
        path,
        [f"data.shards={workdir / 'shards' / 'digits'}", f"run.storage_path={workdir / 'runs'}"]
        + list(overrides),
    )
    if not ray.is_initialized():
        ray.init()
    summary = convert(
        "digits",
        out=config.data.shards,
        T=config.data.T,
        seed=config.seed,
        split=DEMO_SPLIT,
        progress=True,
    )
    print(summary.format(), flush=True)
    return train(config, config_text=path.read_text())


def ui_hint(tracking_uri: str) -> str:
    """How to open the MLflow UI on the run's store."""
    return (
        f"MLflow UI: pip install 'hm2bp[ui]' && mlflow ui --backend-store-uri {tracking_uri}"
        "  (then open http://127.0.0.1:5000)"
    )
