"""The console script dispatches and reports its version."""

import subprocess
import sys

from hm2bp.orchestration import cli


def test_help_without_command_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: hm2bp" in capsys.readouterr().out


def test_console_script_reports_version():
    out = subprocess.run(
        [sys.executable, "-m", "hm2bp.orchestration.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("hm2bp ")


def test_train_refuses_a_bad_config_naming_every_field(tmp_path, capsys):
    from hm2bp.tests.conftest import PROJECT_ROOT

    demo = PROJECT_ROOT / "configs" / "demo.yaml"
    args = ["train", str(demo), "--set", "train.epochs=0", "--set", "network.layers.0.kind=dense"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"hm2bp train: {demo}: 2 problems" in err
    assert "network.layers.0.kind: got 'dense' (expected one of fc, conv, pool, output)" in err
    assert "train.epochs: got 0 (expected >= 1)" in err


def test_train_refuses_shards_that_are_not_there(tmp_path, capsys):
    from hm2bp.tests.conftest import PROJECT_ROOT

    missing = tmp_path / "nothing"
    demo = str(PROJECT_ROOT / "configs" / "demo.yaml")
    assert cli.main(["train", demo, "--set", f"data.shards={missing}"]) == 1
    assert f"{missing}/manifest.json: no manifest" in capsys.readouterr().err


def test_evaluate_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path), "--shards", str(tmp_path)]) == 1
    assert "no checkpoint (expected a checkpoint_epoch_NNNN folder" in capsys.readouterr().err


def test_the_cli_runs_as_a_module_for_ray_job_submit():
    out = subprocess.run(
        [sys.executable, "-m", "hm2bp.orchestration", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "usage: hm2bp train" in out and "--set KEY=VALUE" in out
