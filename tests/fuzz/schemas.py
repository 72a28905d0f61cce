"""Hypothesis strategies for JSON schemas of the shapes agents send (shared by the converter's fuzz tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=6)
_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8) | st.sampled_from(
    ["a", "name", "root", "ws", "value", "string", "a-b", "$ref", "x y", '"q"', "\\"])


def _string(data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", **data}


_STRING = st.fixed_dictionaries({}, optional={
    "minLength": st.integers(0, 20), "maxLength": st.integers(0, 40),
    "format": st.sampled_from(["date", "time", "date-time", "email", "uuid", "uri", "unknown"]),
}).map(_string)
_INTEGER = st.fixed_dictionaries({"type": st.just("integer")}, optional={
    "minimum": st.integers(-10**20, 10**20), "maximum": st.integers(-10**20, 10**20),
    "exclusiveMinimum": st.integers(-100, 100), "exclusiveMaximum": st.integers(-100, 100)})
_NUMBER = st.fixed_dictionaries({"type": st.just("number")}, optional={
    "minimum": st.floats(-1e6, 1e6), "maximum": st.floats(-1e6, 1e6)})
_LEAVES = (_STRING | _INTEGER | _NUMBER
           | st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}, True, {"type": ["string", "null"]},
                              {"$ref": "#/$defs/item"}, {"$ref": "#"}, {"type": "object"}, {"type": "array"}])
           | st.builds(lambda values: {"enum": values}, st.lists(_SCALARS, min_size=1, max_size=4))
           | st.builds(lambda value: {"const": value}, _SCALARS))


def _compound(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    objects = st.builds(
        lambda props, required, extra: {"type": "object", "properties": props,
                                        "required": [k for k in props if k in required],
                                        **({} if extra is None else {"additionalProperties": extra})},
        st.dictionaries(_NAMES, inner, max_size=4), st.sets(_NAMES, max_size=4),
        st.none() | st.booleans() | inner)
    arrays = st.fixed_dictionaries({"type": st.just("array"), "items": inner}, optional={
        "minItems": st.integers(0, 20), "maxItems": st.integers(0, 30)})
    unions = st.builds(lambda key, options: {key: options}, st.sampled_from(["anyOf", "oneOf"]),
                       st.lists(inner, min_size=1, max_size=3))
    return objects | arrays | unions


SCHEMAS = st.builds(lambda body, item: {**body, "$defs": {"item": item}} if isinstance(body, dict) else body,
                    st.recursive(_LEAVES, _compound, max_leaves=10), st.recursive(_LEAVES, _compound, max_leaves=4))
