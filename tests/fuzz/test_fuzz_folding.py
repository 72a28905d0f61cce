"""Fuzz role folding over generated conversations and every TemplateCaps combination.

Why: folding runs on every request, retries included; a conversation it folds wrongly is a 400 from
a strict template (Mistral, Gemma) or a message the model never sees. The properties are the
module's promises: typed errors only, roles the caps allow, alternation, nothing lost, idempotence.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamafile_provider.errors import LlamafileError
from llamafile_provider.folding import fold_messages
from llamafile_provider.messages import ChatMessage, FunctionCall, Role, ToolCall
from llamafile_provider.templates import TemplateCaps

pytestmark = pytest.mark.fuzz

_FIELDS = list(TemplateCaps.__dataclass_fields__)
CAPS = [TemplateCaps(**dict(zip(_FIELDS, values))) for values in itertools.product([False, True], repeat=len(_FIELDS))]
_TEXT = st.text(max_size=12) | st.sampled_from(["", " ", "\n\n", "Continue.", "ERROR PARSING YOUR RESPONSE"])
_IDS = st.sampled_from(["c1", "c2", "c3"])
_CALLS = st.lists(st.builds(lambda i, name, a: ToolCall(id=i, function=FunctionCall(name=name, arguments=a)),
                            _IDS, st.sampled_from(["add", "search"]),
                            st.dictionaries(st.sampled_from(["a", "q"]), st.integers() | st.text(max_size=4))),
                  max_size=2)
MESSAGE = st.one_of(
    st.builds(ChatMessage, role=st.sampled_from([Role.SYSTEM, Role.USER]), content=_TEXT),
    st.builds(ChatMessage, role=st.just(Role.ASSISTANT), content=_TEXT, tool_calls=_CALLS),
    st.builds(ChatMessage, role=st.just(Role.TOOL), content=_TEXT, tool_call_id=st.none() | _IDS),
)
CONVERSATIONS = st.lists(MESSAGE, max_size=10)


def _texts(turns: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for turn in turns:
        content = turn.get("content")
        parts += [content] if isinstance(content, str) else [str(p.get("text", "")) for p in content or []]
    return "\x01".join(parts)


def _check_roles(turns: list[dict[str, Any]], caps: TemplateCaps, native: bool) -> None:
    roles = [t["role"] for t in turns]
    if roles[0] == "system":
        assert caps.supports_system_role, "a system turn for a template without a system role"
        roles = roles[1:]
    assert "system" not in roles, f"a system turn after the first: {roles}"
    assert "tool" not in roles or (native and caps.supports_tool_calls), f"tool turns without native tools: {roles}"
    slots = [r for r, _ in itertools.groupby("user" if r == "tool" else r for r in roles)]
    assert slots[0] == "user" and all(a != b for a, b in zip(slots, slots[1:])), f"roles do not alternate: {roles}"
    assert all(not (a == b == "assistant") for a, b in zip(roles, roles[1:]))
    assert not turns[-1].get("tool_calls") or turns[-1]["role"] != "assistant", "a trailing assistant with calls"
    assert all(t["content"] for t in turns if t["role"] == "user"), "an empty user turn"


@given(CONVERSATIONS, st.sampled_from(CAPS), st.booleans())
def test_folded_roles_obey_the_caps_and_nothing_is_lost(messages: list[ChatMessage], caps: TemplateCaps,
                                                         native: bool) -> None:
    try:
        turns = fold_messages(messages, caps, native_tools=native)
    except LlamafileError:
        assert not any(m.content for m in messages), "a typed error although a message has content"
        return
    _check_roles(turns, caps, native)
    folded = _texts(turns)
    for message in messages:
        assert message.content in folded, f"{message.content!r} was lost"


@given(CONVERSATIONS, st.sampled_from(CAPS), st.booleans())
def test_folding_is_idempotent(messages: list[ChatMessage], caps: TemplateCaps, native: bool) -> None:
    try:
        once = fold_messages(messages, caps, native_tools=native)
    except LlamafileError:
        return
    assert fold_messages(copy.deepcopy(once), caps, native_tools=native) == once


def test_folding_leaves_dict_messages_unchanged() -> None:
    turns = [{"role": "assistant", "content": "",
              "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]}]
    before = copy.deepcopy(turns)
    fold_messages(turns, TemplateCaps(supports_tool_calls=True), native_tools=True)
    assert turns == before
