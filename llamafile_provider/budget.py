"""Constrained replies that close within the output budget. Pure, no I/O.

A constrained reply cut off by ``max_tokens`` is not JSON, so it is lost. ``bound_schema``
rewrites any reply schema (tool calls, a ``response_schema``, or both combined) into a subset
whose every reply fits, then says which ``max_tokens`` to send:

* The *fixed* text — keys, punctuation, ``const``/``enum`` values — costs what the model's
  tokenizer makes of it. The edge measures each fixed piece (``skeleton_pieces``: compact, and
  spaced as models like to write it, ``{"a": 1, "b": 2}``; the larger count is used) with the
  server's ``/tokenize`` and passes the counts in; without counts a piece costs one token
  per character.
* The *free* parts are bounded from what is left, at one token per unit (measured with
  /tokenize on SmolLM2 and Gemma 3: a Latin letter, accented or not, and a JSON escape cost at
  most one token per character, digits exactly one; CJK costs two per character on SmolLM2's
  byte-level tokenizer, which such a reply pays beyond the budget): free strings get ``maxLength`` (an
  untyped value becomes such a string), numbers at most ``max_digits`` digits, arrays a
  ``maxItems`` (8 if strings can still get ``MIN_UNITS`` characters, else 1), objects are
  closed, ``$ref``s inlined (recursive schemas cannot be bounded).
* ``max_tokens`` is then the worst case of that bounded grammar at one token per *UTF-8
  byte*, which holds for every tokenizer (each token is at least one byte): a string unit is
  at most three bytes (a BMP character, or a two-character escape; the grammar leaves out
  characters beyond U+FFFF), a fixed key can be spelt one byte per token — never below the
  caller's budget. A model spelling the JSON as its tokenizer does stays within the caller's
  budget; one that spells it letter by letter (a random-weight model can) may use more, but
  is never cut off.

The grammar this assumes is ``gbnf.schema_to_gbnf(schema, bounded=True, max_digits=...)``:
at most one space where JSON allows whitespace (at most two per structural character), strings of at most ``maxLength`` units (no ``\\u`` escapes, no characters
beyond U+FFFF). Servers that
convert a JSON schema themselves (llamafiler) allow whitespace between tokens: there the
bound holds for the strings only.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llamafile_provider.errors import OutputBudgetError
from llamafile_provider.gbnf import MISSING, resolve_ref

MIN_UNITS = 8      # a free string shorter than this is useless: below it, the budget is too small
FULL_ARRAYS = 8    # items per free array when the budget allows
# 10**18 - 1 still fits a signed 64-bit integer: llama-server's tool-call parser refuses
# integer bounds beyond int64 (400 "At least one of min_value or max_value must be set").
MAX_DIGITS = 18
_EXPONENT = 5      # e, sign, up to 3 digits (the GBNF number rule)
_UNIT_BYTES = 3    # a BMP character in UTF-8, or a two-character escape


@dataclass(frozen=True)
class BoundedSchema:
    """A reply schema every reply of which fits the budget, and what to send with it."""

    schema: dict[str, Any]
    max_tokens: int      # the server's hard cap: the bounded grammar's worst case, >= the budget
    string_units: int    # maxLength given to free strings
    max_digits: int      # digits allowed in numbers (integer part; fraction part too)
    expected_tokens: int  # the longest reply at the measured counts, one token per free unit (<= budget)
    whitespace_slots: int  # places where a server's own schema converter allows whitespace


@dataclass(frozen=True)
class _Str:
    low: int
    high: int


@dataclass(frozen=True)
class _Num:
    integer: bool


@dataclass(frozen=True)
class _Alt:
    options: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class _Arr:
    item: tuple[Any, ...]
    low: int
    high: int


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Walker:
    """Schema → (bounded schema, linear shape: literal text and holes), for given caps."""

    def __init__(self, root: Any, units: int, items: int) -> None:
        self.root, self.units, self.items = root, units, items
        self.digits = min(MAX_DIGITS, max(2, units // 2))
        self._active: list[str] = []

    def string_cap(self, low: int, high: int | None) -> int:
        return max(low, self.units if high is None else min(high, self.units))

    def array_cap(self, low: int, high: int | None) -> int:
        return max(low, self.items if high is None else min(high, self.items))

    def walk(self, node: Any) -> tuple[dict[str, Any], list[Any]]:
        if not isinstance(node, dict) or not node or ("type" not in node and not _typed(node)):
            return self.free_value()
        if isinstance(node.get("$ref"), str):
            return self.ref(node["$ref"])
        if "const" in node:
            return {"const": node["const"]}, [_json(node["const"])]
        if isinstance(node.get("enum"), list) and node["enum"]:
            values = list(node["enum"])
            return {"enum": values}, [_Alt(tuple((_json(v),) for v in values))]
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list) and node[key]:
                parts = [self.walk(s) for s in node[key]]
                return {key: [p[0] for p in parts]}, [_Alt(tuple(tuple(p[1]) for p in parts))]
        if "type" not in node and isinstance(node.get("allOf"), list) and node["allOf"]:
            return self.walk(node["allOf"][0])  # as gbnf: any member accepts a superset of allOf
        kind = node.get("type")
        if isinstance(kind, list):
            parts = [self.walk({**node, "type": k}) for k in kind if isinstance(k, str)] or [self.free_value()]
            return {"anyOf": [p[0] for p in parts]}, [_Alt(tuple(tuple(p[1]) for p in parts))]
        if kind is None:
            kind = "object" if any(k in node for k in ("properties", "required", "additionalProperties")) \
                else "array"
        return {"object": self.object, "array": self.array, "string": self.string, "integer": self.number,
                "number": self.number, "boolean": self.boolean, "null": self.null}.get(
            kind, lambda _n: self.free_value())(node)

    def free_value(self) -> tuple[dict[str, Any], list[Any]]:
        return self.string({"type": "string"})

    def ref(self, ref: str) -> tuple[dict[str, Any], list[Any]]:
        if ref in self._active:
            raise OutputBudgetError(f"the reply schema is recursive ({ref}), so no output budget can bound it; "
                                    "pass max_output_tokens=None or make the schema non-recursive.", needed=None)
        target = resolve_ref(self.root, ref)
        if target is MISSING:
            return self.free_value()
        self._active.append(ref)
        try:
            return self.walk(target)
        finally:
            self._active.pop()

    def string(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        low = node.get("minLength") if isinstance(node.get("minLength"), int) else 0
        high = node.get("maxLength") if isinstance(node.get("maxLength"), int) else None
        cap = self.string_cap(low, high)
        bounded = {k: v for k, v in node.items() if k not in ("maxLength", "$defs", "definitions")}
        return {**bounded, "type": "string", "maxLength": cap}, ['"', _Str(low, cap), '"']

    def number(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        integer = node["type"] == "integer"
        bounded = {k: v for k, v in node.items() if k not in ("$defs", "definitions")}
        if integer:  # the digit bound, in words the JSON-schema path understands too
            bounded.setdefault("maximum", 10 ** self.digits - 1)
            bounded.setdefault("minimum", -(10 ** self.digits - 1))
        return bounded, [_Num(integer)]

    def boolean(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        return {"type": "boolean"}, [_Alt((("true",), ("false",)))]

    def null(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        return {"type": "null"}, ["null"]

    def object(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        props = dict(node["properties"]) if isinstance(node.get("properties"), dict) else {}
        required = [r for r in node.get("required") or [] if isinstance(r, str)]
        for key in required:
            props.setdefault(key, True)
        shape: list[Any] = ["{"]
        bounded_props = {}
        for i, (key, sub) in enumerate(props.items()):  # worst case: every optional member present
            bounded_props[key], inner = self.walk(sub)
            shape += [("," if i else "") + _json(key) + ":", *inner]
        shape.append("}")
        schema = {"type": "object", "properties": bounded_props, "required": required,
                  "additionalProperties": False}
        return schema, shape

    def array(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        low = node.get("minItems") if isinstance(node.get("minItems"), int) else 0
        high = node.get("maxItems") if isinstance(node.get("maxItems"), int) else None
        cap = self.array_cap(low, high)
        item_schema, item = self.walk(node.get("items", True))
        schema = {"type": "array", "items": item_schema, "maxItems": cap, **({"minItems": low} if low else {})}
        return schema, ["[", _Arr(tuple(item), low, cap), "]"]


def _typed(node: dict[str, Any]) -> bool:
    return any(k in node for k in ("$ref", "const", "enum", "anyOf", "oneOf", "allOf", "properties", "required",
                                   "additionalProperties", "items"))


def _merged(shape: list[Any]) -> list[Any]:
    """Adjacent literal texts joined: one piece to tokenize instead of several."""
    out: list[Any] = []
    for part in shape:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return out


class _Cost:
    """Cost of a shape, ``typical`` (measured pieces, one token per free unit) and ``worst``
    (one token per output byte)."""

    def __init__(self, digits: int, counts: Mapping[str, int] | None) -> None:
        self.digits, self.counts = digits, counts or {}

    def text(self, piece: str) -> tuple[int, int]:
        """(typical, worst): the measured count, compact or spaced; one token per byte, spaces
        included."""
        spaced = _spaced(piece)
        measured = max(self.counts.get(piece, len(piece)), self.counts.get(spaced, len(spaced)))
        return measured, max(measured, len(piece.encode()) + 2 * _slots(piece))

    def of(self, shape: list[Any]) -> tuple[int, int, int]:
        """(typical tokens, worst-case tokens, whitespace slots) of ``shape``."""
        typical = worst = slots = 0
        for part in _merged(shape):
            if isinstance(part, str):
                (t, w), n_ws = self.text(part), _slots(part)
            elif isinstance(part, _Str):
                t, w, n_ws = part.high, _UNIT_BYTES * part.high, 0
            elif isinstance(part, _Num):
                t = w = 1 + self.digits if part.integer else 2 + 2 * self.digits + _EXPONENT
                n_ws = 0
            elif isinstance(part, _Alt):
                costs = [self.of(list(option)) for option in part.options]
                t, w, n_ws = (max(c[i] for c in costs) for i in range(3))
            else:  # _Arr
                item = self.of(list(part.item))
                comma_t, comma_w = self.text(",")
                n, commas = part.high, max(0, part.high - 1)
                t, w, n_ws = n * item[0] + commas * comma_t, n * item[1] + commas * comma_w, n * item[2] + commas
            typical, worst, slots = typical + t, worst + w, slots + n_ws
        return typical, worst, slots


def _spaced(piece: str) -> str:
    """``piece`` with a space after each structural ``:`` and ``,``, as models write JSON."""
    out, inside, escaped = [], False, False
    for char in piece:
        out.append(char)
        if inside:
            inside, escaped = (not (char == '"' and not escaped)), (char == "\\" and not escaped)
        elif char == '"':
            inside = True
        elif char in ":,":
            out.append(" ")
    return "".join(out)


def _slots(piece: str) -> int:
    """Structural characters outside JSON strings: where a converter may put whitespace."""
    count, inside, escaped = 0, False, False
    for char in piece:
        if inside:
            inside, escaped = (not (char == '"' and not escaped)), (char == "\\" and not escaped)
        elif char == '"':
            inside = True
        elif char in "{}[],:":
            count += 1
    return count


def pieces(shape: list[Any]) -> set[str]:
    found: set[str] = set()
    for part in _merged(shape):
        if isinstance(part, str):
            found |= {part, _spaced(part)}
        elif isinstance(part, _Alt):
            for option in part.options:
                found |= pieces(list(option))
        elif isinstance(part, _Arr):
            found |= pieces(list(part.item)) | {","}
    return found


def skeleton_pieces(schema: Mapping[str, Any]) -> list[str]:
    """The fixed texts whose token counts ``bound_schema`` wants (measure each without BOS)."""
    root = dict(schema)
    found = pieces(_Walker(root, MIN_UNITS, FULL_ARRAYS).walk(root)[1])
    found |= pieces(_Walker(root, MIN_UNITS, 1).walk(root)[1])
    return sorted(found)


def bound_schema(schema: Mapping[str, Any], max_tokens: int,
                 piece_tokens: Mapping[str, int] | None = None) -> BoundedSchema:
    """``schema`` narrowed so that a reply in it fits ``max_tokens``; raises ``OutputBudgetError``
    (with the budget needed) when not even ``MIN_UNITS``-character strings fit."""
    root = copy.deepcopy(dict(schema))

    def attempt(units: int, items: int) -> tuple[dict[str, Any], int, int, int, int]:
        walker = _Walker(root, units, items)
        bounded, shape = walker.walk(root)
        typical, worst, slots = _Cost(walker.digits, piece_tokens).of(shape)
        return bounded, typical, worst, walker.digits, slots

    for items in (FULL_ARRAYS, 1):
        if attempt(MIN_UNITS, items)[1] > max_tokens:
            continue
        low, high = MIN_UNITS, max(MIN_UNITS, max_tokens)
        while low < high:  # the most units per free string that still fit
            middle = (low + high + 1) // 2
            low, high = (middle, high) if attempt(middle, items)[1] <= max_tokens else (low, middle - 1)
        bounded, typical, worst, digits, slots = attempt(low, items)
        return BoundedSchema(bounded, max(max_tokens, worst), low, digits, typical, slots)
    needed = attempt(MIN_UNITS, 1)[1]
    raise OutputBudgetError(
        f"max_output_tokens={max_tokens} is too small for this constrained reply: its fixed JSON and "
        f"{MIN_UNITS}-character strings need {needed} tokens. Pass max_output_tokens >= {needed} "
        "(or None for no bound).", needed=needed)


__all__ = ["BoundedSchema", "FULL_ARRAYS", "MIN_UNITS", "bound_schema", "skeleton_pieces"]
