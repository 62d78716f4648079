"""Quiet by default, Ray's internals with `-v`: the filter of the lines Ray forwards to the driver,
and the CLI's flag. The demo's whole output is checked end to end in `test_trainer.py`."""

import os

import pytest
import ray._private.worker as ray_worker
from hm2bp.orchestration import cli, verbosity

# Lines as Ray forwards them from its processes (recorded from a demo run of Ray 2.60).
REPORT = (
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'train_accuracy': "
    "0.78}) from rank 1"
)
PREEMPTION = (
    "[2026-12-06 19:38:29,648 E 2360 2403] core_worker.cc:2465: Actor with class name: "
    "'PreemptionWatcher' and ID: 'c04b5e1c' has constructor arguments in the object store and "
    "max_restarts > 0."
)
PROGRESS = (
    "Progress bars disabled. To enable, set "
    "`ray.data.DataContext.get_current().enable_progress_bars = True`."
)
FINISHED = "✔️  Dataset val_035A9TIENlodgLKZo96rw9_0 execution finished in 1.16 seconds"
EPOCH = "epoch 1/10: train acc 0.7837 loss 111.08 | val acc 0.8942 loss 68.28"


def test_ray_internals_are_dropped_from_forwarded_batches_and_ours_kept():
    printed = []
    printer = verbosity._without_noise(printed.append)
    printer({"pid": 7, "is_err": True, "lines": [REPORT, EPOCH, PREEMPTION]})
    printer({"pid": 8, "is_err": True, "lines": [PROGRESS, FINISHED]})  # nothing left: no batch
    printer({"pid": 9, "is_err": False, "lines": ["Traceback (most recent call last):"]})
    assert printed == [
        {"pid": 7, "is_err": True, "lines": [EPOCH]},
        {"pid": 9, "is_err": False, "lines": ["Traceback (most recent call last):"]},
    ]


@pytest.mark.parametrize(
    "argv",
    [["-v", "evaluate"], ["evaluate", "-v"], ["--verbose", "evaluate"], ["evaluate", "--verbose"]],
)
def test_verbose_is_taken_before_or_after_the_command(argv):
    args = cli.build_parser().parse_args([*argv, "--checkpoint", "x"])
    assert args.verbose is True and args.command == "evaluate"


def test_without_verbose_the_cli_quiets_ray_and_with_it_leaves_ray_alone(
    tmp_path, monkeypatch, capsys
):
    """Checked on a command that fails before Ray starts: what each run would set up."""
    for name in verbosity.QUIET_ENV:
        monkeypatch.setenv(name, "unset")  # so that monkeypatch restores the variable after
        monkeypatch.delenv(name)
    monkeypatch.setattr(ray_worker, "_post_init_hooks", [])
    failing = ["evaluate", "--checkpoint", str(tmp_path), "--shards", str(tmp_path)]
    assert cli.main(["-v", *failing]) == 1
    assert ray_worker._post_init_hooks == []
    assert not {name for name in verbosity.QUIET_ENV if name in os.environ}
    assert cli.main(failing) == 1
    assert ray_worker._post_init_hooks == [verbosity._after_ray_init]
    assert {name: os.environ[name] for name in verbosity.QUIET_ENV} == verbosity.QUIET_ENV
    assert "no checkpoint" in capsys.readouterr().err
