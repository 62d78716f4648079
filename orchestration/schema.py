"""Typed configs from plain dicts (YAML), checked in one pass that collects every problem.

A misspelt key in a 50-trial sweep wastes a cluster-day, so a config is refused at load with all of
its problems at once, each named by its dotted path (`network.layers.1.threshold`): unknown keys,
missing required fields, wrong types, values outside their choices or bounds, and the cross-field
rules a dataclass states in its `problems()` method. Defaults live in one place, the dataclasses
(`config.py`, and `kernels/spec.py` for the network); nothing downstream calls `dict.get` with a
default of its own.

Supported field types: `bool`, `int`, `float`, `str`, `Literal[...]`, `X | None`, `tuple[X, ...]`,
`dict[str, X]` and nested frozen dataclasses. Bounds go in field metadata (`bounded`), or in the
class itself: a constructor that raises `ValueError` with a `problems` list (`kernels.spec`) has
each reported under its path. A field with `inline` metadata takes its keys from its parent's
mapping (serde's `flatten`): `network.layers.0.threshold` is the layer's neuron's. A float is
finite: YAML's `.nan` and `.inf` pass every bound comparison unnoticed (`nan < 0` is false), so
they are refused as values of their own.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")
MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """Every problem of one config, each `dotted.path: what was found (what was expected)`."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {count} problem{'s' * (count != 1)}\n{lines}")

    def __reduce__(self):  # crosses Ray boundaries with its arguments
        return (ConfigError, (self.problems, self.source))


def bounded(
    default: Any = MISSING, *, low: float | None = None, high: float | None = None, strict=False
) -> Any:
    """A dataclass field with bounds: `low <= value <= high` (`low < value` when `strict`)."""
    kwargs = {} if default is MISSING else {"default": default}
    return dataclasses.field(metadata={"low": low, "high": high, "strict": strict}, **kwargs)


def _bounds_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    low, high, strict = meta.get("low"), meta.get("high"), meta.get("strict", False)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if low is not None and (value <= low if strict else value < low):
        return f"got {value} (expected {'>' if strict else '>='} {low})"
    if high is not None and value > high:
        return f"got {value} (expected <= {high})"
    return None


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_describe(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if tp is float:
        return "a finite float"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _scalar(tp: type, value: Any) -> tuple[bool, Any]:
    """`(ok, value)` for bool, int, float and str; an int is a float, a bool is neither, and a
    float is finite."""
    if tp is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, value
    if tp is int:
        return isinstance(value, int), value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                number = float(value)
            except (ValueError, OverflowError):
                return False, value
        elif isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:  # an int beyond any float
                return False, value
        else:
            return False, value
        return math.isfinite(number), number
    return isinstance(value, tp), value


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            problems.append(f"{path}: got {value!r} (expected {_describe(tp)})")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            trial: list[str] = []
            converted = _convert(option, value, path, trial)
            if not trial:
                return converted
        problems.append(f"{path}: got {value!r} (expected {_describe(tp)})")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            problems.append(f"{path}: got {value!r} (expected {_describe(tp)})")
            return value
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{path}.{i}", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            problems.append(f"{path}: got {value!r} (expected {_describe(tp)})")
            return value
        item = typing.get_args(tp)[1]
        return {k: _convert(item, v, f"{path}.{k}", problems) for k, v in value.items()}
    ok, converted = _scalar(tp, value)
    if not ok:
        problems.append(f"{path}: got {value!r} (expected {_describe(tp)})")
    return converted


def _keys(cls: type) -> dict[str, dataclasses.Field]:
    """The mapping keys of dataclass `cls`: its fields, with an `inline` field's own fields in its
    place (`LayerSpec.neuron`'s `threshold` sits beside `kind`)."""
    keys = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("inline"):
            keys.update(_keys(typing.get_type_hints(cls)[f.name]))
        else:
            keys[f.name] = f
    return keys


def _build(cls: type[T], data: Any, path: str, problems: list[str], inline=False) -> T:
    prefix = f"{path}." if path else ""
    if not isinstance(data, Mapping):
        problems.append(f"{path or 'config'}: got {data!r} (expected a mapping)")
        return None  # type: ignore[return-value]
    hints = typing.get_type_hints(cls)
    if not inline:
        known = _keys(cls)
        problems.extend(
            f"{prefix}{key}: unknown key (expected one of {', '.join(sorted(known))})"
            for key in data
            if key not in known
        )
    values, before = {}, len(problems)
    for field in dataclasses.fields(cls):
        name = field.name
        if field.metadata.get("inline"):
            values[name] = _build(hints[name], data, path, problems, inline=True)
        elif name in data:
            found = len(problems)
            values[name] = _convert(hints[name], data[name], prefix + name, problems)
            bound = len(problems) == found and _bounds_problem(values[name], field.metadata)
            if bound:
                problems.append(f"{prefix}{name}: {bound}")
        elif field.default is MISSING and field.default_factory is MISSING:
            problems.append(f"{prefix}{name}: missing (expected {_describe(hints[name])})")
    if len(problems) > before:
        return None  # type: ignore[return-value]
    try:
        instance = cls(**values)
    except ValueError as err:  # a class that checks itself (kernels.spec) lists its problems
        problems.extend(prefix + p for p in getattr(err, "problems", [str(err)]))
        return None  # type: ignore[return-value]
    problems.extend(prefix + p for p in getattr(instance, "problems", lambda: [])())
    return instance


def from_dict(cls: type[T], data: Any, source: str = "config") -> T:
    """An instance of the dataclass `cls` from `data`, or `ConfigError` listing every problem."""
    problems: list[str] = []
    instance = _build(cls, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return instance


def to_plain(data: Any) -> Any:
    """A deep copy with mappings as dicts and sequences as lists (what YAML and JSON hold)."""
    if isinstance(data, Mapping):
        return {k: to_plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_plain(v) for v in data]
    return data


def to_dict(instance: Any) -> dict[str, Any]:
    """Plain data (tuples as lists, `inline` fields' keys in their parent's) that `from_dict`
    reads back to an equal instance."""
    return to_plain(_fields(instance))


def _fields(instance: Any) -> Any:
    if dataclasses.is_dataclass(instance):
        plain: dict[str, Any] = {}
        for f in dataclasses.fields(instance):
            value = _fields(getattr(instance, f.name))
            if f.metadata.get("inline"):
                plain.update(value)
            else:
                plain[f.name] = value
        return plain
    if isinstance(instance, list | tuple):
        return [_fields(v) for v in instance]
    if isinstance(instance, Mapping):
        return {k: _fields(v) for k, v in instance.items()}
    return instance


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": [{"c": 2}], "d": [1, 2]}}` -> `{"a.b.0.c": 2, "a.d": [1, 2]}`: one entry per
    scalar or list of scalars (MLflow params, sweep spaces)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data[a][b][1][c] = value` for `dotted = "a.b.1.c"`, creating mappings as needed;
    a list index must exist. Raises `KeyError` naming the part of the path that fails."""
    parts = dotted.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(f"{where}: no item {part} (the list has {len(node)} items)")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise KeyError(f"{where}: {'.'.join(parts[:depth])} is {node!r}, not a mapping")
