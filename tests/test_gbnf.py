"""JSON schema → GBNF: grammar text checked by a small GBNF matcher, then by a real llama-server."""

from __future__ import annotations

import json
import re
from functools import lru_cache, cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from llamafile_provider.gbnf import gbnf_literal, schema_to_gbnf
from llamafile_provider.messages import FunctionSpec
from llamafile_provider.tools import reply_schema
from tests.test_tools import FUNCTIONS, VARIANT_IDS, VARIANTS, chat, check_constrained_reply

# ------------------------------------------------------------------ a tiny GBNF reader + matcher
_TOKEN = re.compile(r'\s*(?:(?P<lit>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<name>[A-Za-z0-9-]+)'
                    r"|(?P<op>[()|?*+]))")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> list[str]:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            kind = body[i + 1]
            size = {"x": 2, "u": 4}.get(kind, 0)
            out.append(chr(int(body[i + 2:i + 2 + size], 16)) if size else _ESCAPES.get(kind, kind))
            i += 2 + size
        else:
            out.append(body[i])
            i += 1
    return out


def _parse_body(text: str) -> Any:
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text)]
    assert "".join(t[1] for t in tokens).replace(" ", "") == text.replace(" ", ""), f"bad syntax: {text}"
    pos = 0

    def alternatives() -> Any:
        nonlocal pos
        options = [sequence()]
        while pos < len(tokens) and tokens[pos] == ("op", "|"):
            pos += 1
            options.append(sequence())
        return ("alt", options)

    def sequence() -> Any:
        nonlocal pos
        items = []
        while pos < len(tokens) and tokens[pos] not in (("op", "|"), ("op", ")")):
            kind, value = tokens[pos]
            pos += 1
            if kind == "lit":
                item: Any = ("lit", "".join(_unescape(value[1:-1])))
            elif kind == "cls":
                chars, negated = _unescape(value[1:-1]), value.startswith("[^")
                chars = chars[1:] if negated else chars
                ranges = []
                while chars:
                    if len(chars) >= 3 and chars[1] == "-":
                        ranges.append((chars[0], chars[2]))
                        chars = chars[3:]
                    else:
                        ranges.append((chars[0], chars[0]))
                        chars = chars[1:]
                item = ("cls", negated, ranges)
            elif kind == "name":
                item = ("ref", value)
            else:
                assert value == "(", f"unexpected {value} in {text}"
                item = alternatives()
                assert tokens[pos] == ("op", ")")
                pos += 1
            if pos < len(tokens) and tokens[pos][1] in "?*+" and tokens[pos][0] == "op":
                item = (tokens[pos][1], item)
                pos += 1
            items.append(item)
        return ("seq", items)

    tree = alternatives()
    assert pos == len(tokens), f"trailing tokens in {text}"
    return tree


def parse_grammar(grammar: str) -> dict[str, Any]:
    rules = {}
    for line in grammar.splitlines():
        name, body = line.split(" ::= ", 1)
        assert re.fullmatch(r"[A-Za-z0-9-]+", name) and name not in rules
        rules[name] = _parse_body(body)
    assert next(iter(rules)) == "root"
    referenced = set(re.findall(r"\('ref', '([^']+)'\)", repr(rules)))
    assert referenced <= set(rules), f"undefined rules: {referenced - set(rules)}"
    return rules


@lru_cache(maxsize=32)
def _parsed(grammar: str) -> dict[str, Any]:
    return parse_grammar(grammar)


def accepts(grammar: str, text: str) -> bool:
    """Whether ``root`` derives exactly ``text`` (set-of-end-positions matching, memoised)."""
    rules = _parsed(grammar)

    @cache
    def rule(name: str, pos: int) -> frozenset[int]:
        return match(rules[name], pos)

    def match(node: Any, pos: int) -> frozenset[int]:
        kind = node[0]
        if kind == "lit":
            return frozenset([pos + len(node[1])]) if text.startswith(node[1], pos) else frozenset()
        if kind == "cls":
            hit = pos < len(text) and any(lo <= text[pos] <= hi for lo, hi in node[2])
            return frozenset([pos + 1]) if pos < len(text) and hit != node[1] else frozenset()
        if kind == "ref":
            return rule(node[1], pos)
        if kind == "alt":
            return frozenset().union(*(match(option, pos) for option in node[1]))
        if kind == "seq":
            ends = frozenset([pos])
            for item in node[1]:
                ends = frozenset().union(*(match(item, p) for p in ends))
            return ends
        found = frozenset([pos]) if kind in "?*" else frozenset()
        frontier = match(node[1], pos)
        while frontier - found:
            found |= frontier
            frontier = frozenset().union(*(match(node[1], p) for p in frontier)) if kind != "?" else frozenset()
        return found

    return len(text) in rule("root", 0)


# ------------------------------------------------------------------ constructs
def check(schema: Any, good: list[str], bad: list[str]) -> None:
    grammar = schema_to_gbnf(schema)
    for text in good:
        assert accepts(grammar, text), f"rejected {text!r}\n{grammar}"
    for text in bad:
        assert not accepts(grammar, text), f"accepted {text!r}\n{grammar}"


def test_strings_with_json_escapes() -> None:
    check({"type": "string"}, ['""', '"plain"', r'"q\"b\\s\/\n\t\u00e9"', '"é 漢字 🙂"', '"del \x7f"'],
          ['"raw\nnewline"', r'"\x41"', r'"\u12"', "'single'", '"open', '"a" '])


@pytest.mark.parametrize(("kind", "good", "bad"), [
    ("integer", ["0", "-7", "12345678901234567890"], ["01", "+1", "1.5", "-", "123456789012345678901"]),
    ("number", ["0", "-0.5", "3.25e-3", "1E+300", "10"], ["1.", ".5", "1e", "1e1000", "NaN"]),
    ("boolean", ["true", "false"], ["True", "1"]),
    ("null", ["null"], ["None", ""]),
])
def test_scalars(kind: str, good: list[str], bad: list[str]) -> None:
    check({"type": kind}, good, bad)


def test_enum_const_and_type_lists() -> None:
    check({"enum": ["celsius", 3, None, {"a": 1}]}, ['"celsius"', "3", "null", '{"a":1}'],
          ['"kelvin"', "4", '"3"'])
    check({"const": 'say "hi"\n'}, [json.dumps('say "hi"\n')], ['"say hi"'])
    check({"type": ["string", "null"]}, ['"x"', "null"], ["1"])


def test_objects_keep_order_and_optional_properties() -> None:
    schema = {"type": "object", "required": ["b"], "additionalProperties": False,
              "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}}}
    check(schema, ['{"b":"x"}', '{"a":1,"b":"x"}', '{"b":"x","c":true}', '{ "a": 1, "b": "x", "c": false }',
                   '{\n  "a": 1,\n  "b": "x"\n}'],
          ["{}", '{"a":1}', '{"b":"x","d":1}', '{"b":"x",}', '{"b":1}', '{"b":"x" "c":true}'])
    check({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
          ["{}", '{"a":1}'], ['{"a":1,"z":2}'])
    check({"type": "object", "additionalProperties": False}, ["{}", "{ }"], ['{"a":1}'])


def test_additional_properties_absent_true_or_schema() -> None:
    open_schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    check(open_schema, ['{"a":1}', '{"a":1,"z":[1,{"y":null}]}'], ['{"z":1}'])
    check({"type": "object", "additionalProperties": {"type": "integer"}},
          ["{}", '{"x":1,"y":2}'], ['{"x":"1"}'])
    check({"type": "object", "properties": {"a": {}}, "patternProperties": {"^x": {}},
           "additionalProperties": False}, ['{"a":1,"x1":2}'], [])


def test_odd_keys_are_escaped() -> None:
    key = 'we"ird\\key\n漢'
    check({"type": "object", "properties": {key: {"type": "integer"}}, "required": [key]},
          [json.dumps({key: 1}, ensure_ascii=False)], ['{"weird":1}'])
    assert gbnf_literal('a"b\\c\n\x01') == r'"a\"b\\c\n\x01"'


def test_arrays_with_bounds() -> None:
    check({"type": "array", "items": {"type": "integer"}}, ["[]", "[1]", "[1, 2,3]"], ["[1,]", '["a"]', "[,1]"])
    check({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
          ["[1,2]", "[1,2,3]"], ["[]", "[1]", "[1,2,3,4]"])
    check({"type": "array", "maxItems": 0}, ["[]"], ["[1]"])
    check({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1000},
          ["[1]", "[" + "1," * 40 + "1]"], ["[]"])
    check({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}}, ['[1,"a"]'], [])


def test_any_of_one_of_all_of_and_refs() -> None:
    check({"anyOf": [{"type": "integer"}, {"type": "string"}]}, ["1", '"a"'], ["null"])
    check({"oneOf": [{"const": 1}, {"const": 2}]}, ["1", "2"], ["3"])
    check({"allOf": [{"type": "integer"}, {"minimum": 3}]}, ["1", "5"], ['"a"'])
    node = {"type": "object", "required": ["v"], "additionalProperties": False,
            "properties": {"v": {"type": "integer"},
                           "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
    tree = {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    check(tree, ['{"v":1}', '{"v":1,"kids":[{"v":2,"kids":[{"v":3}]}]}'], ['{"v":1,"kids":[{"w":2}]}'])
    check({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}, "required": ["x"]},
          ['{"x":[true]}'], [])


def test_unsupported_keywords_only_loosen() -> None:
    check({"type": "string", "pattern": "^[0-9]+$", "minLength": 5, "format": "email"}, ['"abc"'], ["1"])
    check({"type": "integer", "minimum": 10, "multipleOf": 7}, ["3"], ['"3"'])
    check({"not": {"type": "string"}}, ['"x"', "1"], [])
    check(True, ["1", '{"a":[null]}'], ["nul"])


def test_whitespace_is_optional_but_bounded() -> None:
    check({"type": "array", "items": {"type": "integer"}},
          ["[1,2]", "[ 1, 2 ]", "[\n" + " " * 32 + "1\n]", "[\n\t1]"],
          ["[  1]", "[\n" + " " * 33 + "1]", " [1]", "[1] "])


def test_grammar_text_is_classic_gbnf() -> None:
    grammar = schema_to_gbnf(reply_schema(FUNCTIONS, "auto"))
    assert grammar.startswith("root ::= ") and grammar.endswith("\n")
    assert not re.search(r"\{\d|\.\s", grammar.replace('"."', ""))  # no {m,n} repetition, no "." wildcard
    rules = parse_grammar(grammar.strip())
    assert {"ws", "string", "integer"} <= set(rules) and "boolean" not in rules  # only what is used


# ------------------------------------------------------------------ generated instances
def instances(schema: Any, root: Any = None) -> st.SearchStrategy[Any]:
    """Valid instances of the reply-schema subset (a test-only generator)."""
    root = root or schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        return instances(target, root)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([instances(s, root) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = {k: instances(v, root) for k, v in props.items() if k in schema.get("required", [])}
        optional = {k: instances(v, root) for k, v in props.items() if k not in schema.get("required", [])}
        return st.fixed_dictionaries(required, optional=optional).map(  # the grammar keeps schema order
            lambda d: {k: d[k] for k in props if k in d})
    if kind == "array":
        return st.lists(instances(schema["items"], root), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 4))
    return {"string": st.text(max_size=12), "integer": st.integers(-10**15, 10**15),
            "number": st.floats(allow_nan=False, allow_infinity=False), "boolean": st.booleans(),
            "null": st.none()}[kind]


KITCHEN_SINK = FunctionSpec(name="plan", parameters={
    "type": "object", "properties": {
        "title": {"type": "string"}, "ratio": {"type": "number"}, "done": {"type": "boolean"},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1, "maxItems": 2},
        "owner": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["title", "steps"],
    "$defs": {"step": {"type": "object", "properties": {"n": {"type": "integer"}, "kind": {"enum": ["a", "b"]}},
                       "required": ["n"]}}})
SCHEMAS = [reply_schema(FUNCTIONS, "auto"),
           reply_schema([*FUNCTIONS, KITCHEN_SINK], "required", allow_parallel=True, max_parallel_calls=2)]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), which=st.sampled_from([0, 1]), indent=st.sampled_from([None, 0, 2, 4]),
       compact=st.booleans(), ascii_only=st.booleans())
def test_every_valid_reply_is_accepted(data: st.DataObject, which: int, indent: int | None, compact: bool,
                                       ascii_only: bool) -> None:
    schema = SCHEMAS[which]
    value = data.draw(instances(schema))
    Draft202012Validator(schema).validate(value)
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)
    assert accepts(schema_to_gbnf(schema), text)


def test_invalid_replies_are_rejected() -> None:
    grammar = schema_to_gbnf(reply_schema(FUNCTIONS, "get_weather"))
    good = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}]}
    assert accepts(grammar, json.dumps(good))
    for bad in ({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]},
                {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
                {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}}]},
                {"tool_calls": [good["tool_calls"][0]] * 2}, {"tool_calls": []}, {"content": "hi"}):
        assert not accepts(grammar, json.dumps(bad)), bad


# ------------------------------------------------------------------ real servers
@pytest.mark.server
@pytest.mark.parametrize("server", ["chatml_server", "mistral_server"])
@pytest.mark.parametrize(("functions", "choice", "parallel"), VARIANTS, ids=VARIANT_IDS)
def test_grammar_replies_are_valid_calls(request: pytest.FixtureRequest, server: str,
                                         functions: list[FunctionSpec], choice: str, parallel: bool) -> None:
    schema = reply_schema(functions, choice, allow_parallel=parallel)
    reply = chat(request.getfixturevalue(server).base_url, grammar=schema_to_gbnf(schema))
    check_constrained_reply(reply["message"]["content"], schema, functions)


@pytest.mark.server
@pytest.mark.parametrize("server", ["chatml_server", "mistral_server"])
def test_grammar_for_every_construct_is_accepted_by_the_server(request: pytest.FixtureRequest,
                                                               server: str) -> None:
    functions = [*FUNCTIONS, KITCHEN_SINK]
    schema = reply_schema(functions, "plan", allow_parallel=True, max_parallel_calls=2)
    reply = chat(request.getfixturevalue(server).base_url, grammar=schema_to_gbnf(schema), max_tokens=512)
    check_constrained_reply(reply["message"]["content"], schema, functions)
