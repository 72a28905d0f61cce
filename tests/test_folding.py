"""Folding conversations into what chat templates accept: pure rules, properties, real servers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llamafile_provider.errors import ConfigurationError
from llamafile_provider.folding import CONTINUE_PROMPT, fold_messages
from llamafile_provider.messages import ChatMessage, FunctionCall, Role, ToolCall
from llamafile_provider.templates import TemplateCaps
from testbed.server import RunningServer

NO_SYSTEM = TemplateCaps(supports_system_role=False)  # Mistral v0.2
PLAIN = TemplateCaps()  # ChatML, Llama 3
TOOLS = TemplateCaps(supports_tools=True, supports_tool_calls=True, supports_parallel_tool_calls=True)
CAPS = {"no_system": NO_SYSTEM, "plain": PLAIN, "tools": TOOLS}

S, U, A = ChatMessage.system, ChatMessage.user, ChatMessage.assistant


def call(call_id: str, name: str = "search", **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def result(content: str, call_id: str | None) -> ChatMessage:
    return ChatMessage(role=Role.TOOL, content=content, tool_call_id=call_id)


def roles(folded: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in folded]


def text_of(message: dict[str, Any]) -> str:
    return message["content"]


# ---------------------------------------------------------------- invariants shared by all tests


def has_content(messages: list[ChatMessage]) -> bool:
    return any(m.content or m.tool_calls or m.role is Role.TOOL for m in messages)


def assert_well_formed(folded: list[dict[str, Any]], *, native: bool) -> None:
    """The shape every template in the test bed accepts (see folding's module docstring)."""
    allowed = {"system", "user", "assistant"} | ({"tool"} if native else set())
    assert folded, "folding produced no messages"
    assert set(roles(folded)) <= allowed, roles(folded)
    assert all(m["role"] != "system" for m in folded[1:]), roles(folded)
    turns = folded[1:] if folded[0]["role"] == "system" else folded
    assert turns and turns[0]["role"] == "user", roles(folded)
    for previous, current in zip(turns, turns[1:], strict=False):
        pair = (previous["role"], current["role"])
        if current["role"] == "tool":
            assert previous["role"] in ("assistant", "tool"), roles(folded)
        else:
            assert pair in {("user", "assistant"), ("assistant", "user"), ("tool", "user"),
                            ("tool", "assistant")}, roles(folded)
    for index, message in enumerate(turns):
        assert isinstance(message["content"], str)
        if message["role"] == "user":
            assert message["content"], "empty user content"
        if message["role"] == "assistant":
            assert message["content"] or message.get("tool_calls"), "empty assistant turn"
            for tool_call in message.get("tool_calls", ()):
                assert isinstance(tool_call["function"]["arguments"], str)
                json.loads(tool_call["function"]["arguments"])
        if message["role"] == "tool":
            owner = next(t for t in reversed(turns[:index]) if t["role"] != "tool")
            assert message["tool_call_id"] in {c["id"] for c in owner.get("tool_calls", ())}
    assert not (native is False and any("tool_calls" in m for m in folded))
    assert not folded[-1].get("tool_calls"), "llama-server cannot continue a message with tool calls"


def assert_nothing_lost(messages: list[ChatMessage], folded: list[dict[str, Any]]) -> None:
    contents = [text_of(m) for m in folded]
    for message in messages:
        if message.content:
            assert any(message.content in c for c in contents), f"lost {message.content!r}"


# ---------------------------------------------------------------- unit tests of each rule


def test_leading_system_stays_system_when_the_template_has_a_system_role() -> None:
    folded = fold_messages([S("be brief"), U("hi")], PLAIN, native_tools=False)
    assert folded == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_leading_system_is_prefixed_to_the_first_user_turn_without_a_system_role() -> None:
    folded = fold_messages([S("be brief"), U("hi"), A("ok")], NO_SYSTEM, native_tools=False)
    assert folded == [{"role": "user", "content": "be brief\n\nhi"}, {"role": "assistant", "content": "ok"}]


def test_several_leading_system_messages_become_one() -> None:
    folded = fold_messages([S("one"), S("two"), U("hi")], PLAIN, native_tools=False)
    assert folded[0] == {"role": "system", "content": "one\n\ntwo"}
    assert len(folded) == 2


@pytest.mark.parametrize("caps", CAPS.values(), ids=CAPS.keys())
def test_a_later_system_message_becomes_user_content_merged_into_the_next_user_turn(caps: TemplateCaps) -> None:
    messages = [S("sys"), U("do it"), A("garbage"), S("ERROR PARSING YOUR RESPONSE: bad json"), U("retry")]
    folded = fold_messages(messages, caps, native_tools=True)
    assert folded[-1] == {"role": "user", "content": "ERROR PARSING YOUR RESPONSE: bad json\n\nretry"}
    assert roles(folded)[-3:] == ["user", "assistant", "user"]


def test_a_trailing_later_system_message_is_appended_to_the_previous_user_turn() -> None:
    folded = fold_messages([U("q"), S("note")], PLAIN, native_tools=False)
    assert folded == [{"role": "user", "content": "q\n\nnote"}]


def test_a_later_system_message_after_the_assistant_becomes_a_user_turn() -> None:
    folded = fold_messages([U("q"), A("a"), S("feedback")], NO_SYSTEM, native_tools=False)
    assert folded[-1] == {"role": "user", "content": "feedback"}


def test_consecutive_turns_of_the_same_role_are_merged() -> None:
    folded = fold_messages([U("a"), U("b"), A("c"), A("d"), U("e")], PLAIN, native_tools=False)
    assert folded == [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c\n\nd"},
                      {"role": "user", "content": "e"}]


def test_a_conversation_starting_with_the_assistant_gets_a_user_turn_first() -> None:
    folded = fold_messages([A("hello, how can I help?"), U("hi")], PLAIN, native_tools=False)
    assert folded[0] == {"role": "user", "content": CONTINUE_PROMPT}
    assert roles(folded) == ["user", "assistant", "user"]


def test_the_system_text_goes_into_the_inserted_user_turn_without_a_system_role() -> None:
    folded = fold_messages([S("sys"), A("hello")], NO_SYSTEM, native_tools=False)
    assert folded == [{"role": "user", "content": f"sys\n\n{CONTINUE_PROMPT}"},
                      {"role": "assistant", "content": "hello"}]


def test_two_trailing_assistant_messages_become_one() -> None:
    folded = fold_messages([U("q"), A("part 1"), A("part 2")], TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant"]
    assert folded[-1]["content"] == "part 1\n\npart 2"


def test_native_tool_calls_and_results_keep_the_openai_form() -> None:
    messages = [U("find cats"), A("", [call("c1", q="cats"), call("c2", "fetch", url="x")]),
                result("3 cats", "c1"), result("page", "c2"), A("done")]
    folded = fold_messages(messages, TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant", "tool", "tool", "assistant"]
    assert folded[1]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "cats"}'}},
        {"id": "c2", "type": "function", "function": {"name": "fetch", "arguments": '{"url": "x"}'}},
    ]
    assert folded[2] == {"role": "tool", "tool_call_id": "c1", "content": "3 cats"}
    assert folded[3] == {"role": "tool", "tool_call_id": "c2", "content": "page"}


def test_a_trailing_assistant_turn_shows_its_calls_as_text_even_in_native_mode() -> None:
    messages = [U("go"), A("", [call("c1", q="x")]), result("r", "c1"), A("again", [call("c2", q="ü")])]
    folded = fold_messages(messages, TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant", "tool", "assistant"]
    assert "tool_calls" in folded[1]
    assert folded[-1] == {"role": "assistant", "content": 'again\n\n{"name": "search", "arguments": {"q": "ü"}}'}


def test_native_mode_needs_the_template_to_support_tool_calls() -> None:
    messages = [U("find cats"), A("looking", [call("c1", q="cats")]), result("3 cats", "c1")]
    folded = fold_messages(messages, PLAIN, native_tools=True)
    assert roles(folded) == ["user", "assistant", "user"]
    assert "tool_calls" not in folded[1]


def test_text_mode_shows_calls_as_json_lines_after_the_content() -> None:
    messages = [U("go"), A("thinking", [call("c1", q="cats"), call("c2", "fetch", url="ü")])]
    folded = fold_messages(messages, TOOLS, native_tools=False)
    assert folded[1] == {"role": "assistant", "content":
                         'thinking\n\n{"name": "search", "arguments": {"q": "cats"}}\n'
                         '{"name": "fetch", "arguments": {"url": "ü"}}'}


def test_text_mode_call_without_content_is_just_the_json() -> None:
    folded = fold_messages([U("go"), A("", [call("c1")])], NO_SYSTEM, native_tools=False)
    assert folded[1]["content"] == '{"name": "search", "arguments": {}}'


def test_text_mode_tool_results_name_the_function_and_the_call() -> None:
    messages = [U("go"), A("", [call("c1", "fetch")]), result("page text", "c1"), result("x", "zz"),
                result("", None)]
    folded = fold_messages(messages, NO_SYSTEM, native_tools=False)
    assert folded[-1] == {"role": "user", "content": "Result of fetch (call c1):\npage text\n\n"
                                                     "Result of call zz:\nx\n\n"
                                                     "Result of a tool call:\n(no output)"}


def test_orphan_tool_results_become_user_text_even_in_native_mode() -> None:
    messages = [U("go"), A("", [call("c1")]), U("wait"), result("late", "c1"), result("first", "nope")]
    folded = fold_messages(messages, TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant", "user"]
    assert folded[-1]["content"] == "wait\n\nResult of search (call c1):\nlate\n\nResult of call nope:\nfirst"


def test_a_repeated_answer_to_the_same_call_becomes_user_text() -> None:
    messages = [U("go"), A("", [call("c1")]), result("one", "c1"), result("two", "c1")]
    folded = fold_messages(messages, TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant", "tool", "user"]


def test_native_assistant_turns_merge_their_calls() -> None:
    messages = [U("go"), A("a", [call("c1")]), A("b", [call("c2")]), result("r1", "c1"), result("r2", "c2")]
    folded = fold_messages(messages, TOOLS, native_tools=True)
    assert roles(folded) == ["user", "assistant", "tool", "tool"]
    assert folded[1]["content"] == "a\n\nb"
    assert [c["id"] for c in folded[1]["tool_calls"]] == ["c1", "c2"]


def test_empty_messages_are_dropped_but_empty_user_content_is_never_produced() -> None:
    folded = fold_messages([U(""), U("q"), A(""), U(""), A("a")], NO_SYSTEM, native_tools=False)
    assert folded == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_a_system_only_conversation_becomes_a_user_turn() -> None:
    assert fold_messages([S("say hi")], PLAIN, native_tools=False) == [{"role": "user", "content": "say hi"}]


@pytest.mark.parametrize("messages", [[], [U("")], [S(""), A("")]], ids=["none", "empty user", "all empty"])
def test_an_empty_conversation_is_a_configuration_error(messages: list[ChatMessage]) -> None:
    with pytest.raises(ConfigurationError, match="empty conversation"):
        fold_messages(messages, PLAIN, native_tools=False)


def test_openai_dicts_are_accepted_and_inputs_are_not_mutated() -> None:
    messages = [S("s"), {"role": "user", "content": "q"}, A("x", [call("c1")])]
    snapshot = [m.model_dump() if isinstance(m, ChatMessage) else dict(m) for m in messages]
    fold_messages(messages, NO_SYSTEM, native_tools=True)
    assert [m.model_dump() if isinstance(m, ChatMessage) else dict(m) for m in messages] == snapshot


# ---------------------------------------------------------------- property test (pure)

IDS = st.sampled_from(["call_1", "call_2", "c3"])
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
ARGUMENTS = st.dictionaries(st.text(max_size=5),
                            st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()), max_size=3)
TOOL_CALLS = st.builds(lambda i, n, a: ToolCall(id=i, function=FunctionCall(name=n, arguments=a)),
                       IDS, NAMES, ARGUMENTS)


def messages_strategy(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[ChatMessage]]:
    """Random turns, plus whole tool exchanges (calls then their results) so native runs occur."""
    single = st.one_of(
        st.builds(S, text),
        st.builds(U, text),
        st.builds(A, text, st.lists(TOOL_CALLS, max_size=3)),
        st.builds(result, text, st.one_of(IDS, st.none())),
    ).map(lambda m: [m])
    exchange = st.builds(lambda content, calls, outputs: [A(content, calls)] + [
        result(output, c.id) for c, output in zip(calls, outputs, strict=False)],
        text, st.lists(TOOL_CALLS, min_size=1, max_size=3), st.lists(text, max_size=3))
    return st.lists(st.one_of(single, exchange), max_size=10).map(lambda blocks: sum(blocks, []))


CONVERSATIONS = messages_strategy(st.text(max_size=30))


@settings(max_examples=400, deadline=None)
@given(messages=CONVERSATIONS, caps_name=st.sampled_from(sorted(CAPS)), native_tools=st.booleans())
def test_folding_always_gives_a_well_formed_conversation(messages: list[ChatMessage], caps_name: str,
                                                         native_tools: bool) -> None:
    caps = CAPS[caps_name]
    if not has_content(messages):
        with pytest.raises(ConfigurationError):
            fold_messages(messages, caps, native_tools=native_tools)
        return
    folded = fold_messages(messages, caps, native_tools=native_tools)
    assert_well_formed(folded, native=native_tools and caps.supports_tool_calls)
    if not caps.supports_system_role:
        assert folded[0]["role"] != "system"
    assert_nothing_lost(messages, folded)
    json.dumps(folded)  # the wire form must serialise


# ---------------------------------------------------------------- real llama-server

SERVERS = ["mistral", "chatml", "llama3", "hermes"]
TOOL_SPECS = [{"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
_CAPS_CACHE: dict[str, TemplateCaps] = {}


def server_caps(server: RunningServer) -> TemplateCaps:
    if server.base_url not in _CAPS_CACHE:
        props = httpx.get(server.base_url + "/props", timeout=30).json()
        _CAPS_CACHE[server.base_url] = TemplateCaps.from_props(props.get("chat_template_caps"))
    return _CAPS_CACHE[server.base_url]


def request_body(server: RunningServer, messages: list[ChatMessage], native_tools: bool) -> dict[str, Any]:
    caps = server_caps(server)
    body: dict[str, Any] = {"messages": fold_messages(messages, caps, native_tools=native_tools)}
    if native_tools and caps.supports_tool_calls:
        body["tools"] = TOOL_SPECS
    return body


@pytest.mark.server
def test_caps_of_the_test_bed_templates_are_as_expected(request: pytest.FixtureRequest) -> None:
    caps = {name: server_caps(request.getfixturevalue(f"{name}_server")) for name in SERVERS}
    assert not caps["mistral"].supports_system_role
    assert caps["hermes"].supports_tool_calls
    assert not caps["chatml"].supports_tool_calls


@pytest.mark.server
@pytest.mark.parametrize("name", SERVERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=messages_strategy(st.text(max_size=40)), native_tools=st.booleans())
def test_the_real_template_accepts_every_folded_conversation(request: pytest.FixtureRequest, name: str,
                                                             messages: list[ChatMessage],
                                                             native_tools: bool) -> None:
    assume(has_content(messages))
    server: RunningServer = request.getfixturevalue(f"{name}_server")
    body = request_body(server, messages, native_tools)
    response = httpx.post(server.base_url + "/apply-template", json=body, timeout=30)
    assert response.status_code == 200, (response.text, body)
    assert "prompt" in response.json()


AUTOGPT_LIKE = [
    S("You are AutoGPT."), U("Task: find cats."),
    A("I will search.", [call("call_a", q="cats")]), result("3 cats found", "call_a"),
    A("not json at all"), S("ERROR PARSING YOUR RESPONSE: expected JSON"),
]
FIXED_CONVERSATIONS = {
    "autogpt_native": (AUTOGPT_LIKE, True),
    "autogpt_text": (AUTOGPT_LIKE, False),
    "starts_with_assistant": ([A("Hello!"), A("How can I help?"), U("hi"), U("there")], False),
    "trailing_assistants": ([S("sys"), U("q"), A("a1"), A("a2")], True),
    "only_tool_results": ([result("orphan", "x1"), result("ünïcødé ✓", None), S("late system")], True),
}


@pytest.mark.server
@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize("case", FIXED_CONVERSATIONS)
def test_the_real_chat_endpoint_accepts_folded_conversations(request: pytest.FixtureRequest, name: str,
                                                            case: str) -> None:
    messages, native_tools = FIXED_CONVERSATIONS[case]
    server: RunningServer = request.getfixturevalue(f"{name}_server")
    body = {**request_body(server, messages, native_tools), "max_tokens": 4, "temperature": 0}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, (response.text, body)
