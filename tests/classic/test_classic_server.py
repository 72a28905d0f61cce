"""The classic dialect on the REAL classic server (llama.cpp b2282, llamafile 0.8-0.9's server).

These replace hand-copied response bodies: detection, /tokenize, auth, streams, truncation and
the options (``cache_prompt``, ``slot_id``) are checked against what the server does.
"""

from __future__ import annotations

import httpx
import pytest

from llamafile_provider.dialects import Dialect
from llamafile_provider.errors import AuthenticationError
from llamafile_provider.server import AsyncServerClient, ServerClient
from llamafile_provider.tokenizer import Tokenizer
from testbed.server import RunningServer
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.classic

HI = [{"role": "user", "content": "hello"}]


def test_detected_as_classic_with_context_slots_and_no_template(classic_server: RunningServer) -> None:
    with ServerClient(classic_server.base_url + "/v1/") as client:
        info = client.info()
    assert info.dialect is Dialect.CLASSIC
    assert info.template is None and info.build_info is None
    assert info.slots == 4 and info.context_size == 32768 // 4
    assert info.model_id and info.server_header == "llama.cpp"


def test_props_carry_no_chat_template(classic_server: RunningServer) -> None:
    props = httpx.get(classic_server.base_url + "/props").json()
    assert "chat_template" not in props
    assert {"user_name", "assistant_name", "default_generation_settings", "total_slots"} <= set(props)


def test_tokenize_gives_ids_without_bos_and_parses_special_text(classic_server: RunningServer) -> None:
    with ServerClient(classic_server.base_url) as client:
        tokenizer = Tokenizer(client)
        ids = tokenizer.encode("hello world")
        assert ids and 1 not in ids  # <s> (id 1) is never added by classic /tokenize
        assert tokenizer.decode(ids) == "hello world"
        assert tokenizer.encode("</s>") == [2]  # special text becomes the special token


def test_wrong_key_is_a_plain_text_401_mapped_to_authentication_error(classic_keyed_server: RunningServer) -> None:
    url = classic_keyed_server.base_url
    raw = httpx.post(url + "/v1/chat/completions", json={"messages": HI, "max_tokens": 1},
                     headers={"Authorization": "Bearer wrong"})
    assert raw.status_code == 401
    assert raw.headers["content-type"].startswith("text/plain") and raw.text == "Unauthorized"
    with ServerClient(url, api_key="wrong") as client:
        # /tokenize is not guarded: the probe and the tokenizer work without the key...
        assert client.tokenize("hello")
        # ...but the format probe sends a chat request, which is
        with pytest.raises(AuthenticationError) as caught:
            client.detect_chat_format()
    assert "LLAMAFILE_API_KEY" in str(caught.value) and "wrong" not in str(caught.value)


def test_right_key_passes(classic_keyed_server: RunningServer) -> None:
    with ServerClient(classic_keyed_server.base_url, api_key=TEST_API_KEY) as client:
        assert client.detect_chat_format().chat_format == "llama2"


def test_stream_ends_without_done_and_without_usage(classic_server: RunningServer) -> None:
    with httpx.stream("POST", classic_server.base_url + "/v1/chat/completions",
                      json={"messages": HI, "max_tokens": 4, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines and all(line != "data: [DONE]" for line in lines)
    assert all('"usage"' not in line for line in lines)


def test_cache_prompt_defaults_off_and_slot_id_picks_the_slot(classic_server: RunningServer) -> None:
    """``slot_id`` (not llama-server's ``id_slot``) pins a slot; without ``cache_prompt`` the
    whole prompt is evaluated again, with it only what is new."""
    url, prompt = classic_server.base_url + "/completion", "hello world " * 20

    def ask(**options: object) -> dict:
        return httpx.post(url, json={"prompt": prompt, "n_predict": 1, **options}).json()

    first = ask(slot_id=3)
    assert first["slot_id"] == 3
    again = ask(slot_id=3)
    assert again["slot_id"] == 3 and again["timings"]["prompt_n"] == again["tokens_evaluated"]
    ask(slot_id=2, cache_prompt=True)
    cached = ask(slot_id=2, cache_prompt=True)
    assert cached["slot_id"] == 2 and cached["timings"]["prompt_n"] < cached["tokens_evaluated"]


def test_a_prompt_longer_than_the_slot_is_silently_truncated(classic_server: RunningServer) -> None:
    """No error: b2282 drops the middle of the prompt and says so only on /completion."""
    slot_context = 32768 // 4
    prompt = "hello " * (slot_context + 200)
    response = httpx.post(classic_server.base_url + "/completion",
                          json={"prompt": prompt, "n_predict": 1}, timeout=120)
    assert response.status_code == 200
    body = response.json()
    assert body["truncated"] is True and body["tokens_evaluated"] < slot_context


def test_chat_says_stop_even_when_cut_at_max_tokens(classic_server: RunningServer) -> None:
    """The server quirk the provider corrects (see test_classic_provider)."""
    body = httpx.post(classic_server.base_url + "/v1/chat/completions",
                      json={"messages": HI, "max_tokens": 1}).json()
    assert body["usage"]["completion_tokens"] == 1
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_async_client_detects_the_same_layout(classic_chatml_server: RunningServer) -> None:
    async with AsyncServerClient(classic_chatml_server.base_url) as client:
        info = await client.detect_chat_format()
    assert (info.chat_format, info.add_bos) == ("chatml", False)
