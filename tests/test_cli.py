"""The console script dispatches and reports its version."""

import json
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


def test_convert_takes_encoder_parameters_by_name(ray_local, tmp_path, capsys):
    """`-e KEY=VALUE` sets a field of the data's encoder (an audio front end, its coding, its
    layout); the manifest records it. An unknown field or a value of another type is refused,
    named."""
    import numpy as np
    from hm2bp.pipelines.manifest import read_manifest
    from hm2bp.tests.formats import wav_bytes

    source = tmp_path / "wav"
    source.mkdir()
    for i, name in enumerate(["0_ann_0.wav", "1_ann_0.wav", "0_bob_0.wav", "1_bob_0.wav"]):
        tone = 8000 * np.sin(2 * np.pi * (300 + 150 * i) * np.arange(800) / 8000)
        (source / name).write_bytes(wav_bytes(tone.astype(np.int16), 8000))
    out = tmp_path / "shards"
    argv = ["convert", "wav", "--source", str(source), "--out", str(out), "--split",
            "group:speaker=bob"]  # fmt: skip
    options = ["-e", "front_end=gammatone", "--encode", "coding=rate", "-e", "segments=1"]
    assert cli.main([*argv, *options, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 4
    manifest = read_manifest(str(out))
    params = manifest.encoder_params
    assert (params["front_end"], params["coding"], params["segments"]) == ("gammatone", "rate", 1)
    assert manifest.input_shape == (78,)  # the reference's layout, not the default's 624
    refusals = {
        "tau=3": "encoder option 'tau': not a parameter of the 'cochlea_bsa' encoder (expected",
        "hold_steps=ten": "encoder option hold_steps: got 'ten' (expected int, like the ",
    }
    for pair, message in refusals.items():
        assert cli.main([*argv, "-e", pair]) == 1
        assert message in capsys.readouterr().err
    assert cli.main([*argv, "-e", "front_end"]) == 1
    assert "--encode 'front_end': not KEY=VALUE" in capsys.readouterr().err
