"""The `hm2bp` console script: a thin dispatcher.

Each subcommand parses its arguments here and calls one importable function of its room, so that
the CLI, `ray job submit` entry points and tests all run the same code. A handler prints its human
lines and returns its exit status and its record; with `--json` the lines (and whatever Ray, Tune
or a worker prints to stdout meanwhile) go to stderr, and the record alone, as one JSON object, to
stdout. Ray's internals show only with `-v` (`verbosity.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

JSON_HELP = "print one JSON object on stdout, the human lines on stderr"
VERBOSE_HELP = "also show Ray's, Ray Data's and MLflow's own log lines (default: warnings only)"

# What a handler returns: its exit status and its `--json` record.
Outcome = tuple[int, Any]
# name -> (help, function that adds the subcommand's arguments, function that runs it)
Command = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Outcome]
]


def _commands() -> dict[str, Command]:
    return {
        "convert": (
            "convert a data set into Parquet shards of spike events, one Ray task per shard",
            _convert_arguments,
            _convert,
        ),
        "train": (
            "train HM2-BP on Ray Train from an experiment config, tracked in MLflow",
            _train_arguments,
            _train,
        ),
        "evaluate": (
            "accuracy and confusion matrix of a checkpoint on a shard set (no Ray needed)",
            _evaluate_arguments,
            _evaluate,
        ),
        "demo": (
            "convert scikit-learn's digits, train on 2 Ray Train workers, log to MLflow",
            _demo_arguments,
            _demo,
        ),
        "sweep": (
            "a Ray Tune sweep over full Ray Train runs, tracked as MLflow parent and child runs",
            _sweep_arguments,
            _sweep,
        ),
        "runs": (
            "an MLflow experiment's runs side by side: differing params, final and best metrics",
            _runs_arguments,
            _runs,
        ),
    }


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    from hm2bp.pipelines.registry import READERS

    parser.add_argument(
        "dataset", choices=sorted(READERS), help="the reader (digits needs no --source)"
    )
    parser.add_argument("--source", help="the raw data: a folder or file of the data set")
    parser.add_argument(
        "--out", required=True, help="destination folder: a path or a URI (s3://...)"
    )
    parser.add_argument("--T", type=int, dest="T", help="time steps (default: the reference's)")
    parser.add_argument("--dt", type=float, help="step length in ms (default: the reference's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the encoding and splits")
    parser.add_argument(
        "--split",
        help="ratio:0.8, range:train=0-5999,val=6000-7999, "
        "group:speaker=theo or source (default: source where there is one)",
    )
    parser.add_argument("--rows-per-shard", type=int, default=1000)
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable files, list them")
    parser.add_argument("--keep-pixels", action="store_true", help="also store raw images")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished conversion with other options in --out (atomically)",
    )
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, e.g. -o stabilize=true (nmnist), -o split=letters "
        "(emnist); values are read as JSON, else as text",
    )
    parser.add_argument(
        "-e",
        "--encode",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an encoder parameter, recorded in the manifest, e.g. -e front_end=gammatone or "
        "-e coding=rate (audio), -e scale=4 (images); values are read as JSON, else as text",
    )


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """`KEY=VALUE` pairs as a mapping, each value read as JSON, else as text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not (key and sep):
            raise ValueError(f"{flag} {pair!r}: not KEY=VALUE (expected e.g. {flag} name=value)")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def _convert(args: argparse.Namespace) -> Outcome:
    import ray
    from hm2bp.pipelines.convert import convert

    options = _key_values(args.option, "--option")
    encoding = _key_values(args.encode, "--encode")
    ray_started = not ray.is_initialized()
    summary = convert(
        args.dataset,
        out=args.out,
        source=args.source,
        T=args.T,
        dt_ms=args.dt,
        seed=args.seed,
        split=args.split,
        rows_per_shard=args.rows_per_shard,
        skip_bad=args.skip_bad,
        keep_pixels=args.keep_pixels,
        reader_options=options,
        encoder_options=encoding,
        progress=True,  # on a terminal only
        overwrite=args.overwrite,
    )
    if ray_started:  # before the summary: no line of Ray's follows it
        ray.shutdown()
    print(summary.format(), flush=True)
    return 0, summary.summary()


def _set_and_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config field by its dotted path, e.g. --set optimizer.lr=5e-4 "
        "--set network.layers.0.threshold=15 (value read as YAML)",
    )
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, e.g. configs/mnist_slice.yaml")
    _set_and_json(parser)


def _report_run(result, ray_started: bool) -> Outcome:
    """The end of `train` and `demo`: a Ray this command started is shut down first, so that no
    worker line follows the summary."""
    import ray
    from hm2bp.orchestration.demo import ui_hint

    if ray_started:
        ray.shutdown()
    summary = result.summary()
    print(
        f"val accuracy {summary['val_accuracy']:.4f} after {summary['epochs']} epochs "
        f"(mean of the last 3: {summary['val_accuracy_last3_mean']:.4f}, best: "
        f"{summary['val_accuracy_best']:.4f})\ncheckpoint {summary['checkpoint']} (best: "
        f"{summary['best_checkpoint']})\n"
        f"MLflow run {summary['run_id']} in {summary['tracking_uri']}\n"
        f"{ui_hint(summary['tracking_uri'])}"
    )
    if summary["tracking_problem"]:
        print(f"tracking problem: {summary['tracking_problem']}", file=sys.stderr)
    return 0, summary


def _train(args: argparse.Namespace) -> Outcome:
    from pathlib import Path

    import ray
    from hm2bp.orchestration.config import load_config
    from hm2bp.orchestration.trainer import train

    ray_started = not ray.is_initialized()
    config = load_config(args.config, args.overrides)
    result = train(config, config_text=Path(args.config).read_text())
    return _report_run(result, ray_started)


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="best or latest (of --run), an MLflow runs:/<id> URI (that run's best), or a "
        "checkpoint_epoch_NNNN folder or its checkpoint.pt",
    )
    parser.add_argument(
        "--run", help="for best or latest: a run folder (run.storage_path/run.name) or runs:/<id>"
    )
    parser.add_argument(
        "--tracking-uri", help="the MLflow store of runs:/ URIs (default: as `hm2bp train`'s)"
    )
    parser.add_argument(
        "--shards", help="a folder of `hm2bp convert` or URI (default: the run's own shards)"
    )
    parser.add_argument("--split", help="split to evaluate (default: the config's val split)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _evaluate(args: argparse.Namespace) -> Outcome:
    from hm2bp.orchestration.evaluate import evaluate, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint, args.run, args.tracking_uri)
    result = evaluate(checkpoint, args.shards, args.split, args.device, args.batch_size)
    print(result.format(), flush=True)
    return 0, result.summary()


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", default=".", help="where shards/, runs/ (and by default mlflow.db) go"
    )
    _set_and_json(parser)


def _demo(args: argparse.Namespace) -> Outcome:
    import ray
    from hm2bp.orchestration.demo import demo

    ray_started = not ray.is_initialized()
    result = demo(args.workdir, args.overrides)
    return _report_run(result, ray_started)


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a sweep YAML file, e.g. configs/demo_sweep.yaml")
    _set_and_json(parser)  # --set applies to the base experiment


def _sweep(args: argparse.Namespace) -> Outcome:
    import ray
    from hm2bp.orchestration.runs import collect_runs, format_table
    from hm2bp.orchestration.sweep import load_sweep, run_sweep

    ray_started = not ray.is_initialized()
    sweep = load_sweep(args.config, args.overrides)
    result = run_sweep(sweep)
    if ray_started:
        ray.shutdown()
    experiment = sweep.config.tracking.experiment
    if result.tracking_problem:  # the table would be read from that store
        print(f"tracking problem: {result.tracking_problem}", file=sys.stderr)
    else:
        metric = sweep.settings.metric
        children = collect_runs(
            result.tracking_uri, experiment, metric, parent_run_id=result.parent_run_id
        )
        print(format_table(children, [metric]))
    if result.best_trial is not None:
        metric = sweep.settings.metric
        print(f"best trial {result.best_trial}: {metric} {result.best_value:.4f}")
    print(f"compare: hm2bp runs --experiment {experiment} --tracking-uri {result.tracking_uri}")
    return (1 if any(t["error"] for t in result.trials) else 0), result.summary()


def _runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="the MLflow experiment name")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store (default: MLFLOW_TRACKING_URI, else ./mlflow.db in this directory)",
    )
    parser.add_argument("--sort", default="val_accuracy", help="metric to sort by (its best value)")
    parser.add_argument(
        "--metric",
        action="append",
        help="metric column(s) to show (default: the sort metric and val_loss)",
    )
    parser.add_argument("--parent", help="only the child runs of this run id (a sweep's trials)")
    parser.add_argument(
        "--filter",
        help="only the runs this MLflow search filter selects, e.g. \"params.seed = '0'\" or "
        "\"attributes.status = 'FINISHED'\" (the store filters)",
    )
    parser.add_argument(
        "--plot", help="also write every run's curve of the sort metric to this png"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def _runs(args: argparse.Namespace) -> Outcome:
    from pathlib import Path

    from hm2bp.orchestration.runs import collect_runs, format_table, plot_runs, rows_record
    from hm2bp.orchestration.tracking import resolve_tracking_uri

    metrics = args.metric or [args.sort, "val_loss"]
    rows = collect_runs(
        resolve_tracking_uri(args.tracking_uri),
        args.experiment,
        args.sort,
        metrics,
        parent_run_id=args.parent,
        filter_string=args.filter,
    )
    if args.plot:
        plot = plot_runs(rows, args.sort, Path(args.plot))
        print(f"comparison plot: {plot}")
    if not args.json:
        print(format_table(rows, metrics))
    return 0, rows_record(rows)  # printed by `main` as one JSON object


def expected_failure(err: BaseException) -> BaseException | None:
    """The expected failure that `err` is or carries, else None (a bug: its traceback is shown).

    Expected are the errors our code raises with a message for the user (`BadInputError`,
    `ConfigError`, `CheckpointError` and the other `ValueError`s, `TrackingError`) and the
    system's `OSError`s (a missing file, a full disk), each naming the file. Ray wraps an error
    raised in a task or a training worker (`RayTaskError.cause`, Train's `worker_failures`,
    `controller_failure`, a worker's `_base_exc`); the innermost one is the message.
    """
    from hm2bp.orchestration.tracking import TrackingError

    pending, seen = [err], set()
    while pending:
        error = pending.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        wrapped = [
            getattr(error, name, None) for name in ("cause", "_base_exc", "controller_failure")
        ]
        wrapped += list(getattr(error, "worker_failures", {}).values())
        inner = [e for e in wrapped if isinstance(e, BaseException)]
        if isinstance(error, ValueError | OSError | TrackingError) and not inner:
            return error
        pending += [*inner, *([error.__cause__] if error.__cause__ is not None else [])]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hm2bp", description="HM2-BP spiking neural networks on Ray: convert, train, sweep."
    )
    parser.add_argument("--version", action="version", version=f"hm2bp {version('hm2bp')}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the traceback of an expected failure too (bad input, config, store)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in _commands().items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(cmd)
        # Also after the command (`hm2bp demo -v`); SUPPRESS keeps a `-v` given before it.
        cmd.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
        cmd.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    if not args.verbose:
        from hm2bp.orchestration.verbosity import quiet

        quiet()
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            code, record = args.handler(args)
    except Exception as err:
        found = expected_failure(err)
        if found is None or args.traceback:
            raise
        print(f"hm2bp {args.command}: {found}", file=sys.stderr)
        return 1
    if args.json and record is not None:
        print(json.dumps(record, default=str), file=stdout, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
