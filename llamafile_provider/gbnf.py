"""JSON schema → llama.cpp GBNF grammar, for servers that take ``grammar`` but not ``response_format``.

Classic llamafile builds constrain sampling only through a GBNF ``grammar``; this converts the
schema subset that ``tools.reply_schema`` produces (plus what function parameters commonly
use) into one, with a ``root`` rule.

Supported: ``type`` (single or list), object ``properties`` (emitted in schema order; optional
ones may be omitted) / ``required`` / ``additionalProperties`` (false, true, absent = allowed,
or a schema), array ``items`` / ``minItems`` / ``maxItems``, string / number / integer /
boolean / null, ``enum``, ``const``, ``anyOf`` / ``oneOf``, ``allOf`` (first member), local
``$ref`` (``#``, ``#/$defs/...``, any JSON pointer; recursion works).

Everything else (``pattern``, ``format``, ``minLength``, ``minimum``, ``not``, ``prefixItems``,
``patternProperties``, ``if``/``then``...) is ignored in the safe direction: the grammar may
accept MORE than the schema, never less, so a valid reply is never made impossible;
``tools.validate_call`` catches what slips through. For the same reason keywords beside
``anyOf``/``$ref`` are ignored, and huge ``minItems``/``maxItems`` are relaxed. Keys, ``const``
and ``enum`` values are matched in one spelling: compact JSON with raw UTF-8 (not ``\\u`` escapes).

The one deliberate exception: numbers have at most 20 integer digits (enough for any 64-bit
integer), 20 fraction digits and 3 exponent digits. Unbounded digit runs are how a small
model never terminates: the test-bed model wrote "a":934444... until ``max_tokens``.
Whitespace is optional but bounded (one space, or a newline plus up to 32 spaces/tabs: eight
levels of 4-space indentation) for the same reason. Only classic GBNF syntax is emitted (no
``{m,n}`` repetition, no ``.``), so old llamafile parsers read it too.

``bounded=True`` is for schemas from ``budget.bound_schema``, whose replies must fit an output
budget: whitespace is at most one space (models write ``{"a": 1, "b": 2}``; forbidding that space
made SmolLM2 spell keys in more, shorter tokens), at most ``max_digits`` digits per number part, and strings honour
``minLength``/``maxLength`` in units of one character or one two-character escape (``\\u``
escapes and characters beyond U+FFFF are left out, so a unit is at most three UTF-8 bytes).
"""

from __future__ import annotations

import json
import re
from typing import Any

_MAX_EXPANDED = 16  # minItems/maxItems spans larger than this are relaxed (looser, never stricter)

_MAX_DIGITS = 20
_MAX_INDENT = 32


def _up_to(unit: str, count: int) -> str:
    """Zero to ``count`` copies of ``unit``, nested so that matching stays deterministic."""
    return (f"( {unit} " * count + ")? " * count).strip()


_PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {  # name: (body, rules it uses)
    "ws": ('( " " | "\\n" indent )?', ("indent",)),
    "indent": (_up_to("[ \\t]", _MAX_INDENT), ()),
    "string": ('"\\"" char* "\\""', ("char",)),
    "char": ('[^"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" hex hex hex hex )', ("hex",)),
    "hex": ("[0-9a-fA-F]", ()),
    # a bounded string's unit: at most 3 UTF-8 bytes (no \\u escapes, nothing beyond U+FFFF)
    "bchar": ('[^"\\\\\\x00-\\x1F\U00010000-\U0010FFFF] | "\\\\" ["\\\\/bfnrt]', ()),
    "integer": ('"-"? ( "0" | [1-9] more-digits )', ("more-digits",)),
    "number": ('integer ( "." [0-9] more-digits )? ( [eE] [-+]? [0-9] ( [0-9] [0-9]? )? )?',
               ("integer", "more-digits")),
    "more-digits": (_up_to("[0-9]", _MAX_DIGITS - 1), ()),
    "boolean": ('"true" | "false"', ()),
    "null": ('"null"', ()),
    "value": ("object | array | string | number | boolean | null",
              ("object", "array", "string", "number", "boolean", "null")),
    "object": ('"{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"',
               ("ws", "string", "value")),
    "array": ('"[" ws ( value ws ( "," ws value ws )* )? "]"', ("ws", "value")),
}
_SIMPLE_TYPES = {"string", "number", "integer", "boolean", "null"}
_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def json_literal(value: Any) -> str:
    """The GBNF literal matching ``value`` serialised as compact JSON."""
    return gbnf_literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def schema_to_gbnf(schema: dict[str, Any] | bool, *, bounded: bool = False,
                   max_digits: int = _MAX_DIGITS) -> str:
    """A GBNF grammar whose ``root`` accepts (at least) every JSON text valid for ``schema``
    (``bounded``: exactly the compact texts whose length ``budget`` computed, see above)."""
    converter = _Converter(schema, bounded=bounded)
    top = converter.visit(schema, "top")
    primitives = {**{name: body for name, (body, _) in _PRIMITIVES.items()},
                  "more-digits": _up_to("[0-9]", max(1, max_digits) - 1)}
    if bounded:
        primitives["ws"] = '" "?'
    lines = [f"root ::= {top}"]
    lines += [f"{name} ::= {body}" for name, body in converter.rules.items()]
    lines += [f"{name} ::= {primitives[name]}" for name in _PRIMITIVES if name in converter.used
              and not (bounded and name == "indent")]
    return "\n".join(lines) + "\n"


class _Converter:
    """Turns (sub)schemas into named rules; equal bodies share one rule, refs get one rule each."""

    def __init__(self, root: Any, *, bounded: bool = False) -> None:
        self.root = root
        self.bounded = bounded
        self._chains: dict[int, str] = {}
        self.rules: dict[str, str] = {}
        self.used: set[str] = set()
        self._by_body: dict[str, str] = {}
        self._refs: dict[str, str] = {}
        # refs being expanded with no text consumed yet: meeting one again is left recursion, which
        # llama.cpp's grammar parser refuses ("failed to parse grammar", 400; found by fuzzing)
        self._head: set[str] = set()

    def use(self, name: str) -> str:
        if name not in self.used:
            self.used.add(name)
            for dependency in _PRIMITIVES[name][1]:
                self.use(dependency)
        return name

    def fresh(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9-]+", "-", hint).strip("-") or "rule"
        name, n = base, 1
        while name in self.rules or name in _PRIMITIVES or name == "root":
            n += 1
            name = f"{base}-{n}"
        return name

    def add(self, hint: str, body: str) -> str:
        if _NAME.match(body):  # already a single rule
            return body
        if body not in self._by_body:
            name = self.fresh(hint)
            self.rules[name] = body
            self._by_body[body] = name
        return self._by_body[body]

    def alternatives(self, hint: str, names: list[str]) -> str:
        return self.add(hint, " | ".join(dict.fromkeys(names)))

    def visit(self, schema: Any, hint: str) -> str:
        """The name of a rule matching ``schema``."""
        if not isinstance(schema, dict) or not schema:  # true, false (ignored: looser), {}
            return self.use("value")
        if isinstance(schema.get("$ref"), str):
            return self.ref(schema["$ref"])
        if "const" in schema:
            return self.add(hint, json_literal(schema["const"]))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.add(hint, " | ".join(dict.fromkeys(json_literal(v) for v in schema["enum"])))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                options = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(schema[key])]
                return self.alternatives(hint, options)
        kind = schema.get("type")
        if kind is None and isinstance(schema.get("allOf"), list) and schema["allOf"]:
            return self.visit(schema["allOf"][0], hint)  # any one member accepts a superset of allOf
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)]
            if not kinds:
                return self.use("value")
            return self.alternatives(hint, [self.visit({**schema, "type": k}, f"{hint}-{k}") for k in kinds])
        if kind is None:
            if any(k in schema for k in ("properties", "required", "additionalProperties")):
                kind = "object"
            elif "items" in schema:
                kind = "array"
        if kind in ("object", "array"):
            head, self._head = self._head, set()  # "{" or "[" comes first: recursion inside is not left
            try:
                return self.object(schema, hint) if kind == "object" else self.array(schema, hint)
            finally:
                self._head = head
        if kind == "string" and self.bounded and isinstance(schema.get("maxLength"), int):
            return self.bounded_string(schema, hint)
        return self.use(kind) if kind in _SIMPLE_TYPES else self.use("value")

    def bounded_string(self, schema: dict[str, Any], hint: str) -> str:
        low = schema.get("minLength") if isinstance(schema.get("minLength"), int) else 0
        high = max(low, schema["maxLength"])
        body = " ".join(['"\\""', *[self.use("bchar")] * low, self.chain(high - low), '"\\""'])
        return self.add(hint, " ".join(body.split()))

    def chain(self, count: int) -> str:
        """A rule for 0..count ``bchar``s: one rule per length, each referring to the next
        shorter, so that neither the grammar parser nor the sampler nests ``count`` deep."""
        if count <= 0:
            return ""
        for n in range(1, count + 1):
            if n not in self._chains:
                name = self.fresh(f"chars-{n}")
                self.rules[name] = f"( {self.use('bchar')} {self._chains[n - 1]} )?" if n > 1 else "bchar?"
                self._chains[n] = name
        return self._chains[count]

    def ref(self, ref: str) -> str:
        if ref in self._head:  # X ::= X | A accepts what A accepts; "value" is looser, never stricter
            return self.use("value")
        if ref not in self._refs:
            target = resolve_ref(self.root, ref)
            if target is MISSING:
                return self.use("value")  # remote or broken ref: accept anything
            name = self.fresh("ref-" + (ref.rstrip("/").rsplit("/", 1)[-1] if ref != "#" else "root"))
            self._refs[ref] = name
            self.rules[name] = ""  # reserved first, so recursive refs find it
            self._head.add(ref)
            body = self.visit(target, name + "-body")
            self._head.discard(ref)
            self.rules[name] = body if body != name else self.use("value")  # {"$ref": "#"} at the root
        return self._refs[ref]

    def object(self, schema: dict[str, Any], hint: str) -> str:
        props = dict(schema["properties"]) if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        for key in required:
            props.setdefault(key, True)
        extra = schema.get("additionalProperties", True)
        if schema.get("patternProperties") or not isinstance(extra, (bool, dict)):
            extra = True
        extra_kv = extra_tail = ""
        if extra is not False:
            value = self.visit(extra, f"{hint}-extra")
            extra_kv = self.add(f"{hint}-extra-kv", f'{self.use("string")} ws ":" ws {value} ws')
            extra_tail = f'( "," ws {extra_kv} )*'
        self.use("ws")
        kvs = [self.add(f"{hint}-{key}-kv",
                        f'{gbnf_literal(json.dumps(key, ensure_ascii=False))} ws ":" ws '
                        f'{self.visit(sub, f"{hint}-{key}")} ws')
               for key, sub in props.items()]
        is_required = [key in required for key in props]

        # tails[i]: the members after one already emitted, from index i on; one rule each, so
        # that n optional members make a grammar of size n, not n**2 (found by fuzzing)
        tails = [""] * len(kvs) + [extra_tail]
        for i in reversed(range(len(kvs))):
            part = '"," ws ' + kvs[i] if is_required[i] else f'( "," ws {kvs[i]} )?'
            tails[i] = self.add(f"{hint}-tail-{i}", f"{part} {tails[i + 1]}".strip())

        def tail(i: int) -> str:
            return tails[i]

        # the first member present is any optional one before the first required one, or that one
        last_first = is_required.index(True) if any(is_required) else len(kvs) - 1
        alternatives = [f"{kvs[k]} {tail(k + 1)}".strip() for k in range(last_first + 1)]
        if extra_kv and not any(is_required):
            alternatives.append(f"{extra_kv} {extra_tail}")
        if not alternatives:
            return self.add(hint, '"{" ws "}"')
        optional = "" if any(is_required) else "?"
        return self.add(hint, f'"{{" ws ( {" | ".join(alternatives)} ){optional} "}}"')

    def array(self, schema: dict[str, Any], hint: str) -> str:
        items = schema.get("items", True)
        if "prefixItems" in schema or not isinstance(items, (bool, dict)):
            items = True
        self.use("ws")
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        low = min(low, _MAX_EXPANDED) if isinstance(low, int) and low > 0 else 0
        if not isinstance(high, int) or high < low or high - low > _MAX_EXPANDED:
            high = None
        if high == 0 or items is False:
            return self.add(hint, '"[" ws "]"')
        item = self.visit(items, f"{hint}-item")
        more = f'"," ws {item} ws'
        parts = [f"{item} ws"] + [more] * (max(low, 1) - 1)
        parts.append(f"( {more} )*" if high is None else _up_to(more, high - max(low, 1)))
        sequence = " ".join(p for p in parts if p)
        return self.add(hint, f'"[" ws {sequence} "]"' if low else f'"[" ws ( {sequence} )? "]"')


MISSING = object()  # what resolve_ref returns for a pointer that leads nowhere


def resolve_ref(root: Any, ref: str) -> Any:
    """The target of a local JSON-pointer ``$ref`` (``#`` or ``#/a/b``), or ``MISSING``."""
    if not ref.startswith("#"):
        return MISSING
    node = root
    for raw in [p for p in ref[1:].split("/") if p]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


__all__ = ["gbnf_literal", "json_literal", "schema_to_gbnf"]
