"""Fuzz the JSON schema → GBNF converter (and budget.bound_schema before it) against both real servers.

Why: on classic llamafile (0.8-0.9) the grammar is the only way to constrain a reply, and a grammar
the server cannot parse is a 400/500 at best (b2282 may crash). So every distinct grammar the
converter emits for hypothesis-generated schemas is posted to the test bed's llama-server and to the
classic b2282 server, and must be answered 200; a sample generated under a bounded grammar must be
valid for the schema whenever it closes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamafile_provider.budget import BoundedSchema, bound_schema
from llamafile_provider.errors import LlamafileError
from llamafile_provider.gbnf import schema_to_gbnf
from tests.fuzz.schemas import SCHEMAS

pytestmark = pytest.mark.fuzz
_CI_POSTS = 40  # distinct grammars posted per server in the short profile (all of them under -m fuzz)
_SAMPLES = 8  # grammars whose generated sample is checked against the schema (each is a longer request)
_RELAXED = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")  # not enforced by the grammar


def _structural(schema: Any) -> Any:
    """``schema`` without the numeric bounds the converter leaves to validation (looser, never stricter)."""
    if isinstance(schema, dict):
        return {k: _structural(v) for k, v in schema.items() if k not in _RELAXED}
    if isinstance(schema, list):
        return [_structural(v) for v in schema]
    return schema


def _convert(schema: Any, budget: int) -> list[tuple[str, BoundedSchema | None]]:
    """Both grammars the provider can send for ``schema``: plain, and bounded to ``budget`` tokens."""
    grammars: list[tuple[str, BoundedSchema | None]] = []
    try:
        grammars.append((schema_to_gbnf(schema), None))
    except LlamafileError:
        pass
    if isinstance(schema, dict):
        try:
            bounded = bound_schema(schema, budget)
        except LlamafileError:
            return grammars
        grammars.append((schema_to_gbnf(bounded.schema, bounded=True, max_digits=bounded.max_digits), bounded))
    for grammar, _ in grammars:
        assert isinstance(grammar, str) and grammar.startswith("root ::= ") and grammar.endswith("\n")
    return grammars


@given(SCHEMAS, st.integers(1, 400))
def test_converter_raises_only_typed_errors(schema: Any, budget: int) -> None:
    _convert(schema, budget)


def _collect() -> dict[str, tuple[Any, BoundedSchema | None]]:
    """The distinct grammars of one hypothesis run of the active profile, with their schemas."""
    found: dict[str, tuple[Any, BoundedSchema | None]] = {}

    @settings(database=None)
    @given(SCHEMAS, st.integers(16, 400))
    def run(schema: Any, budget: int) -> None:
        for grammar, bounded in _convert(schema, budget):
            found.setdefault(grammar, (schema, bounded))

    run()
    return found


def _complete(base_url: str, grammar: str, n_predict: int) -> httpx.Response:
    return httpx.post(base_url + "/completion", timeout=120,
                      json={"prompt": "Reply in JSON:", "grammar": grammar, "n_predict": n_predict,
                            "temperature": 0, "cache_prompt": False})


@pytest.mark.server
@pytest.mark.classic
def test_every_emitted_grammar_is_accepted_by_both_servers(mistral_server: Any, classic_server: Any) -> None:
    grammars = list(_collect())
    assert len(grammars) >= 20, "the schema strategy produced too few distinct grammars to test anything"
    if settings().max_examples < 10_000:  # CI: posting every grammar to both servers takes minutes
        grammars = grammars[:_CI_POSTS]
    for name, server in (("llama-server", mistral_server), ("classic b2282", classic_server)):
        for grammar in grammars:
            reply = _complete(server.base_url, grammar, 1)
            assert reply.status_code == 200, f"{name} refused a grammar ({reply.status_code} {reply.text[:300]}):\n{grammar}"
            assert "content" in reply.json(), f"{name} answered 200 without content: {reply.text[:300]}"
    print(f"{len(grammars)} distinct grammars accepted by llama-server and the classic server")


@pytest.mark.server
def test_a_closed_sample_under_a_bounded_grammar_is_valid_for_its_schema(mistral_server: Any) -> None:
    bounded = [(g, s, b) for g, (s, b) in _collect().items() if b is not None][:_SAMPLES]
    assert bounded, "no bounded grammar was produced"
    closed = 0
    for grammar, schema, budget in bounded:
        reply = _complete(mistral_server.base_url, grammar, min(budget.max_tokens, 256))
        assert reply.status_code == 200, reply.text[:300]
        try:
            value = json.loads(reply.json()["content"])
        except json.JSONDecodeError:
            continue  # did not close within the cap: nothing to judge
        jsonschema.validate(value, _structural(schema))
        closed += 1
    print(f"{closed} of {len(bounded)} bounded samples closed, all valid")
    assert closed > 0
