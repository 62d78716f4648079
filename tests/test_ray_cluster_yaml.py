"""`ray_cluster.yaml` is a valid cluster-launcher config, by Ray's own schema and checks.

`prepare_config` merges the AWS provider defaults as `ray up` does; `validate_config` then checks
the result against `ray/autoscaler/ray-schema.json` plus the launcher's cross-field rules.
Nothing is launched and no cloud API is called.
"""

import yaml
from hm2bp.tests.conftest import PROJECT_ROOT
from ray.autoscaler._private.util import prepare_config, validate_config


def _load():
    return yaml.safe_load((PROJECT_ROOT / "ray_cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    validate_config(prepare_config(_load()))


def test_cluster_has_a_cpu_head_and_an_autoscaling_gpu_worker_type():
    config = _load()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert "GPU" not in head["resources"]
    assert any(t["min_workers"] < t["max_workers"] for t in workers.values())


def test_dashboard_is_private_and_nodes_install_the_project():
    config = _load()
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "mlflow server" in head_start
    assert any("/home/ubuntu/hm2bp" in cmd for cmd in config["setup_commands"])
