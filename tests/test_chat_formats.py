"""Pure parts of classic support. The b2282 layouts are checked against the real server in
tests/classic/; the three that only llamafile 0.9's core has (Llama 3, Phi 3, Gemma as user
turns) cannot run here, so their expected prompts are written from reading its
``llama_chat_apply_template_internal`` (llama.cpp/llama.cpp, llamafile 0.9.3)."""

from __future__ import annotations

import pytest

from llamafile_provider import chat_formats, classic
from llamafile_provider.dialects import Dialect, ServerInfo

CHAT = [{"role": "system", "content": " be brief "}, {"role": "user", "content": "hi\n"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]


def test_llamafile_only_layouts() -> None:
    assert chat_formats.render("llama3", CHAT) == (
        "<|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nbye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert chat_formats.render("phi3", CHAT) == (
        "<|system|>\n be brief <|end|>\n<|user|>\nhi\n<|end|>\n<|assistant|>\nhello<|end|>\n"
        "<|user|>\nbye<|end|>\n<|assistant|>\n")
    assert chat_formats.render("gemma-user-turns", CHAT) == (
        "<start_of_turn>user\nbe brief<end_of_turn>\n<start_of_turn>user\nhi<end_of_turn>\n"
        "<start_of_turn>model\nhello<end_of_turn>\n<start_of_turn>user\nbye<end_of_turn>\n"
        "<start_of_turn>model\n")


def test_trim_is_the_servers_c_isspace_not_pythons() -> None:
    # U+00A0 is whitespace to Python's str.strip() but not to C isspace() on UTF-8 bytes.
    assert chat_formats.render("llama2+strip", [{"role": "user", "content": "\u00a0x \t"}]) == "[INST] \u00a0x [/INST]"


def test_every_layout_renders_the_probe_differently() -> None:
    probe = chat_formats.probe_messages("n0nce")
    renderings = [fmt(probe) for fmt in chat_formats.FORMATS.values()]
    assert len(set(renderings)) == len(renderings)
    assert all("n0nce" in text for text in renderings)
    for name, text in zip(chat_formats.FORMATS, renderings):
        assert chat_formats.identify(text, probe) == name
    assert chat_formats.identify("USER: hi\nASSISTANT:", probe) is None


def test_count_matching_needs_exactly_one_fit() -> None:
    assert chat_formats.match_count(11, {"a": 10, "b": 12}, add_bos=True) == "a"
    assert chat_formats.match_count(11, {"a": 10, "b": 10}, add_bos=True) is None
    assert chat_formats.match_count(11, {"a": 10}, add_bos=False) is None


def test_completion_body_keeps_the_chat_defaults_and_options() -> None:
    request = {"model": "m", "messages": [], "max_tokens": 7, "stop": "END", "seed": 3,
               "extra_body": {"grammar": "root ::= \"x\"", "top_k": 5}, "response_format": {"type": "json_object"}}
    body = classic.completion_body(request, "PROMPT")
    assert body == {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
                    "cache_prompt": False, "seed": 3, "grammar": "root ::= \"x\"", "top_k": 5,
                    "stop": ["END", "<|im_end|>"], "n_predict": 7, "prompt": "PROMPT", "stream": False}
    assert classic.completion_body({"messages": []}, "p")["n_predict"] == -1


@pytest.mark.parametrize(("answer", "reason"), [
    ({"stopped_limit": True}, "length"), ({"stopped_eos": True}, "stop"),
    ({"stopped_limit": True, "stopped_eos": True}, "stop"), ({"stopped_word": True}, "stop")])
def test_completion_answer_becomes_a_chat_completion(answer: dict, reason: str) -> None:
    chat = classic.as_chat_completion({"content": "x", "tokens_evaluated": 4, "tokens_predicted": 2, **answer}, "m")
    assert chat["choices"][0]["finish_reason"] == reason and chat["choices"][0]["message"]["content"] == "x"
    assert chat["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_finish_reason_is_corrected_only_for_classic_at_the_limit() -> None:
    assert classic.finish_reason(Dialect.CLASSIC, "stop", 8, 8) == "length"
    assert classic.finish_reason(Dialect.CLASSIC, "stop", 5, 8) == "stop"
    assert classic.finish_reason(Dialect.CLASSIC, "stop", 5, None) == "stop"
    assert classic.finish_reason(Dialect.LLAMA_SERVER, "stop", 8, 8) == "stop"


def test_prefill_route_per_dialect() -> None:
    known = ServerInfo("http://x", Dialect.CLASSIC, chat_format="llama2", add_bos=True)
    unknown = ServerInfo("http://x", Dialect.CLASSIC, chat_format="")
    grammar = {"extra_body": {"grammar": "root ::= \"{\""}}
    route = classic.PrefillRoute
    assert classic.prefill_route(known, "{", {}) is route.CONTINUE
    assert classic.prefill_route(known, "{", grammar) is route.DROP
    assert classic.prefill_route(unknown, "{", {}) is route.DROP
    assert classic.prefill_route(ServerInfo("http://x", Dialect.LLAMAFILER), "{", {}) is route.DROP
    llama_server = ServerInfo("http://x", Dialect.LLAMA_SERVER)
    assert classic.prefill_route(llama_server, "{", {}) is route.CHAT
    # a constrained reply drops the prefill on every dialect (llama-server: 400 under a grammar)
    schema = {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}
    assert classic.prefill_route(llama_server, "{", grammar) is route.DROP
    assert classic.prefill_route(llama_server, "{", schema) is route.DROP
    assert classic.prefill_route(known, "", grammar) is route.CHAT
