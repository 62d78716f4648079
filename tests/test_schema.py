"""The config schema: every problem collected with its dotted path; flattening; dotted setting."""

import pickle
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hm2bp.orchestration.schema import (
    ConfigError,
    bounded,
    flatten,
    from_dict,
    set_dotted,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    kind: Literal["a", "b"]
    rate: float = bounded(1.0, low=0, strict=True)

    def problems(self):
        return ["rate: b needs rate > 2"] if self.kind == "b" and self.rate <= 2 else []


@dataclass(frozen=True)
class Outer:
    name: str
    items: tuple[Inner, ...]
    shape: tuple[int, ...] = (1,)
    count: int = bounded(1, low=1)
    maybe: float | None = None
    flag: bool = False
    inner: Inner = field(default_factory=lambda: Inner("a"))


def test_valid_data_round_trips():
    data = {"name": "x", "items": [{"kind": "b", "rate": 3}], "shape": [2, 3], "maybe": "1e-3"}
    outer = from_dict(Outer, data)
    assert outer.items[0].rate == 3.0 and outer.shape == (2, 3)
    assert outer.maybe == 0.001  # YAML 1.1 reads 1e-3 as a string; a float field accepts it
    assert from_dict(Outer, to_dict(outer)) == outer


def test_every_problem_is_collected_with_its_dotted_path():
    data = {
        "items": [{"kind": "c"}, {"kind": "b", "rate": 1}, {"kind": "a", "rate": -1}],
        "count": 0,
        "flag": "yes",
        "shape": [1, "two"],
        "extra": 1,
        "inner": {"kind": "a", "typo": 2},
    }
    with pytest.raises(ConfigError) as caught:
        from_dict(Outer, data, source="exp.yaml")
    assert caught.value.problems == [
        "extra: unknown key (expected one of count, flag, inner, items, maybe, name, shape)",
        "name: missing (expected str)",
        "items.0.kind: got 'c' (expected one of a, b)",
        "items.1.rate: b needs rate > 2",
        "items.2.rate: got -1.0 (expected > 0)",
        "shape.1: got 'two' (expected int)",
        "count: got 0 (expected >= 1)",
        "flag: got 'yes' (expected bool)",
        "inner.typo: unknown key (expected one of kind, rate)",
    ]
    assert str(caught.value).startswith("exp.yaml: 9 problems\n  extra: unknown key")


def test_bool_is_not_an_int_and_an_int_is_a_float():
    with pytest.raises(ConfigError, match=r"count: got True \(expected int\)"):
        from_dict(Outer, {"name": "x", "items": [], "count": True})
    assert from_dict(Outer, {"name": "x", "items": [{"kind": "a", "rate": 2}]}).items[0].rate == 2.0


def test_config_error_pickles_for_ray():
    error = ConfigError(["a.b: bad"], "f.yaml")
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == ["a.b: bad"] and str(again) == str(error)


def test_flatten_keeps_scalar_lists_and_indexes_mappings():
    flat = flatten({"a": {"b": [{"c": 1}, {"c": 2}], "shape": [28, 28]}, "d": None})
    assert flat == {"a.b.0.c": 1, "a.b.1.c": 2, "a.shape": [28, 28], "d": None}


def test_set_dotted_creates_mappings_and_refuses_bad_indices():
    data = {"layers": [{"size": 1}]}
    set_dotted(data, "layers.0.size", 5)
    set_dotted(data, "new.deep.key", "v")
    assert data == {"layers": [{"size": 5}], "new": {"deep": {"key": "v"}}}
    with pytest.raises(KeyError, match=r"layers.3: no item 3 \(the list has 1 items\)"):
        set_dotted(data, "layers.3.size", 1)
    with pytest.raises(KeyError, match="layers.0.size.x: layers.0.size is 5, not a mapping"):
        set_dotted(data, "layers.0.size.x", 1)
