"""Experiment configs: every shipped YAML loads; overrides; refusals; the check against shards."""

from pathlib import Path

import pytest
import yaml
from hm2bp.kernels.spec import NetworkSpec
from hm2bp.orchestration.config import (
    ConfigError,
    config_from_dict,
    load_config,
    parse_override,
    to_dict,
)
from hm2bp.orchestration.preflight import manifest_problems
from hm2bp.pipelines.manifest import Manifest, ShardEntry
from hm2bp.tests.conftest import PROJECT_ROOT

# Experiments; sweep files (`*_sweep.yaml`, tests/test_sweep.py) name an experiment instead.
CONFIGS = sorted(
    p for p in (PROJECT_ROOT / "configs").glob("*.yaml") if not p.stem.endswith("_sweep")
)
DEMO = PROJECT_ROOT / "configs" / "demo.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_opens_with_its_command_and_builds_a_network(path: Path):
    config = load_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# hm2bp "), f"{path.name} must open with its run command"
    assert isinstance(config.network, NetworkSpec)  # the engine's own spec, checked by it
    assert config_from_dict(to_dict(config)) == config  # plain data and back, as to workers


def test_shipped_configs_cover_the_paper_rows_and_the_slices():
    names = {p.stem for p in CONFIGS}
    assert {
        "demo",
        "mnist_mlp",
        "nmnist_mlp",
        "mnist_cnn",
        "emnist_balanced",
        "ti46_alpha",
    } <= names
    assert {"mnist_slice", "nmnist_slice", "fsdd"} <= names


def test_paper_rows_keep_the_reference_hyperparameters():
    mlp = load_config(PROJECT_ROOT / "configs" / "mnist_mlp.yaml")
    assert [layer.neuron.threshold for layer in mlp.network.layers] == [
        20,
        8,
    ]  # spec 5: the log's output nu
    assert (mlp.network.reg_lambda, mlp.network.reg_beta, mlp.data.T) == (10, 0.04, 400)
    cnn = load_config(PROJECT_ROOT / "configs" / "mnist_cnn.yaml")
    assert [layer.neuron.threshold for layer in cnn.network.layers] == [5, 2, 12, 4, 10, 10]
    assert (cnn.optimizer.schedule, cnn.network.reg_lambda) == ("cnn", 0)
    assert cnn.data.reencode and cnn.data.augment
    nmnist = load_config(PROJECT_ROOT / "configs" / "nmnist_mlp.yaml")
    assert (nmnist.network.n_inputs, nmnist.data.T, nmnist.network.reg_beta) == (2312, 540, 0.01)


def test_overrides_apply_by_dotted_path_with_yaml_values():
    config = load_config(
        DEMO, ["optimizer.lr=5e-4", "network.layers.0.threshold=15", "train.boosting=true"]
    )
    assert config.optimizer.lr == 0.0005
    assert config.network.layers[0].neuron.threshold == 15.0
    assert config.train.boosting is True and config.boosting is True
    assert parse_override("scaling.cpus_per_worker=null") == ("scaling.cpus_per_worker", None)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("optimizer.lr")


def test_bad_values_and_keys_are_refused_together_naming_the_file():
    data = yaml.safe_load(DEMO.read_text())
    data["network"]["layers"][1]["kind"] = "softmax"
    data["train"]["batch_size"] = 0
    data["scaling"]["gpus"] = 1
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, ["data.encoder=poisson"], source="demo.yaml")
    assert caught.value.problems == [
        "data.encoder: got 'poisson' (expected one of rate, event_binning, cochlea_bsa)",
        "network.layers.1.kind: got 'softmax' (expected one of fc, conv, pool, output)",
        "train.batch_size: got 0 (expected >= 1)",
        "scaling.gpus: unknown key (expected one of cpus_per_worker, gpus_per_worker, "
        "max_failures, min_workers, placement, resize_interval_s, resources_per_worker, "
        "workers)",
    ]
    assert str(caught.value).startswith("demo.yaml: 4 problems")


def test_cross_field_rules():
    data = yaml.safe_load(DEMO.read_text())
    data["data"]["augment"] = True
    data["network"]["layers"] = [{"kind": "output", "size": 10, "threshold": 8}, {"kind": "fc"}]
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.problems == [
        "data.augment: true needs reencode: true (the warp acts on raw pixels)",
        "network.layers.1.threshold: missing (expected a finite float)",
    ]
    data["network"]["layers"][1]["threshold"] = 5
    data["data"]["augment"] = False
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.problems == [
        "network.layers.1.size: got 0 (expected an int >= 1 for a fc layer)",
    ]


def test_the_network_section_has_the_engines_limits_all_reported_at_once():
    """The config once accepted `refractory: 0` and `tau_m: 1`, which the engine refused later,
    inside a worker; now the network section is `NetworkSpec` and its limits are the engine's."""
    assert problems_of(
        "network.layers.0.refractory=0",
        "network.layers.0.tau_m=1",
        "network.layers.1.tau_s=64",
        "network.targets.desired=0.5",
        "network.input_shape=[8, 8]",
    ) == [
        "network.layers.0.tau_m: got 1.0 (expected > 1 step)",
        "network.layers.0.refractory: got 0 (expected an int >= 1 (steps))",
        "network.layers.1.tau_s: got 64.0 (expected a value different from tau_m (c = 1 / (1 - "
        "tau_s / tau_m) would be infinite))",
        "network.targets.desired: got 0.5 (expected >= 1 spike)",
    ]
    assert problems_of("network.input_shape=[8, 8]", "network.layers.0.kind=pool") == [
        "network.input_shape: got [8, 8] (expected [n_inputs] or [C, H, W] of positive ints)"
    ]
    layer = to_dict(load_config(DEMO))["network"]["layers"][0]
    assert set(layer) == {"kind", "threshold", "tau_m", "tau_s", "refractory", "size",
                          "kernel", "init_range"}  # fmt: skip


def problems_of(*overrides: str) -> list[str]:
    """The problems the demo config with `overrides` is refused with."""
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO, list(overrides))
    return caught.value.problems


def test_boosting_defaults_to_on_only_for_one_worker_at_batch_one():
    base = load_config(DEMO)
    assert not base.boosting  # 2 workers
    assert load_config(DEMO, ["scaling.workers=1", "train.batch_size=1"]).boosting
    assert not load_config(DEMO, ["scaling.workers=1", "train.batch_size=4"]).boosting


def test_elastic_scaling_is_checked_and_refuses_boosting():
    elastic = load_config(DEMO, ["scaling.min_workers=1", "scaling.placement=spread"])
    assert elastic.scaling.elastic and not elastic.boosting
    assert not load_config(DEMO, ["scaling.min_workers=2"]).scaling.elastic  # min = workers
    assert problems_of(
        "scaling.min_workers=3",
        "scaling.placement=far",
        "scaling.resources_per_worker={CPU: 1, trainer: 0, fpga: 1}",
    ) == ["scaling.placement: got 'far' (expected one of pack, spread, strict_pack, strict_spread)"]
    assert problems_of(
        "scaling.min_workers=3", "scaling.resources_per_worker={CPU: 1, trainer: 0}"
    ) == [
        "scaling.min_workers: got 3 (expected at most workers = 2)",
        "scaling.resources_per_worker.CPU: set it with cpus_per_worker (expected custom "
        "resources only)",
        "scaling.resources_per_worker.trainer: got 0.0 (expected > 0)",
    ]
    elastic_boosting = problems_of("scaling.min_workers=1", "train.boosting=true")
    assert elastic_boosting[0].startswith("train.boosting: true with elastic workers")
    assert problems_of("scaling.resources_per_worker=[trainer]") == [
        "scaling.resources_per_worker: got ['trainer'] (expected a mapping of names to a "
        "finite float)"
    ]


def _manifest(**changes) -> Manifest:
    values = dict(
        format=2, dataset="digits", kind="image", classes=tuple("0123456789"),
        input_shape=(8, 8), T=100, dt_ms=1.0, encoder="rate",
        encoder_params={"T": 100, "dt_ms": 1.0, "scale": 5.5}, seed=0, split="ratio:0.8",
        keep_pixels=False, rows_per_shard=1000, skip_bad=False, reader="digits",
        reader_options={}, note="", source_labels=(),
        sources={}, software={},
        shards=(ShardEntry("train-00000-0123abcd.parquet", "train", 1, 1, "x"),
                ShardEntry("val-00000-0123abcd.parquet", "val", 1, 1, "x")),
    )  # fmt: skip
    return Manifest(**{**values, **changes})


def test_config_is_checked_against_the_manifest():
    config = load_config(DEMO)
    assert manifest_problems(config, _manifest()) == []
    bad = _manifest(T=400, encoder="event_binning", input_shape=(28, 28), classes=tuple("ab"))
    assert manifest_problems(load_config(DEMO, ["data.reencode=true"]), bad) == [
        "data.T: got 100 (the shards have T=400)",
        "data.encoder: got 'rate' (the shards were encoded with 'event_binning')",
        "network.input_shape: got [64] = 64 inputs (the shards have input_shape [28, 28] = 784 "
        "inputs)",
        "network.layers.1.size: got 10 outputs (the shards have 2 classes)",
        "data.reencode: true, but the shards hold no raw pixels (convert with --keep-pixels)",
    ]
    assert manifest_problems(load_config(DEMO, ["data.val_split=test"]), _manifest()) == [
        "data.val_split: got 'test' (the shards have splits train, val)"
    ]


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "nan", "1e400"])
def test_non_finite_numbers_are_refused_everywhere(text):
    """`nan < 0` is false, so a NaN passes every bound; it is refused as a value of its own."""
    overrides = [
        f"optimizer.lr={text}",
        f"network.layers.0.threshold={text}",
        f"network.reg_lambda={text}",
    ]
    with pytest.raises(ConfigError) as caught:
        config_from_dict(yaml.safe_load(DEMO.read_text()), overrides, source="demo.yaml")
    assert len(caught.value.problems) == 3
    assert all("expected a finite float" in p for p in caught.value.problems)
