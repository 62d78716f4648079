"""A sweep's search space, as written in YAML, turned into Ray Tune's param space.

Each key is the dotted path of an experiment-config field (the same paths `--set` takes); each
value names one Tune sampler:

    search:
      optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {grid: [16, 64]}
      network.layers.0.neuron.threshold: {choice: [10, 20]}

`grid` values are crossed with each other and repeated `num_samples` times; the random samplers
draw once per sample. Written as data so that the sweep's MLflow parent run can log it verbatim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hm2bp.orchestration.schema import ConfigError


def _pair(name: str) -> Callable[[Any], tuple[float, float]]:
    def check(value: Any) -> tuple[float, float]:
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value
            )
            or not value[0] < value[1]
        ):
            raise ValueError(f"{name} takes [low, high] of finite numbers with low < high")
        return float(value[0]), float(value[1])

    return check


def _values(name: str) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{name} takes a non-empty list of values")
        return list(value)

    return check


def _samplers() -> dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]]:
    """name -> (argument check, Tune constructor); Tune is imported only when a sweep runs."""
    from ray import tune

    return {
        "grid": (_values("grid"), tune.grid_search),
        "choice": (_values("choice"), tune.choice),
        "uniform": (_pair("uniform"), lambda lh: tune.uniform(*lh)),
        "loguniform": (_pair("loguniform"), lambda lh: tune.loguniform(*lh)),
        "randint": (_pair("randint"), lambda lh: tune.randint(int(lh[0]), int(lh[1]))),
    }


def param_space(search: Mapping[str, Any], where: str = "search") -> dict[str, Any]:
    """`{dotted path: Tune sampler}` for `search`; every bad entry is reported in one error."""
    samplers = _samplers()
    space, problems = {}, []
    for path, spec in search.items():
        if not isinstance(spec, Mapping) or len(spec) != 1:
            problems.append(
                f"{where}.{path}: found {spec!r}, expected one sampler such as "
                f"{{grid: [...]}} (samplers: {', '.join(samplers)})"
            )
            continue
        ((name, argument),) = spec.items()
        if name not in samplers:
            problems.append(
                f"{where}.{path}: unknown sampler {name!r} (samplers: {', '.join(samplers)})"
            )
            continue
        check, build = samplers[name]
        try:
            space[path] = build(check(argument))
        except ValueError as err:
            problems.append(f"{where}.{path}: {err}, found {argument!r}")
    if problems:
        raise ConfigError(problems)
    return space
