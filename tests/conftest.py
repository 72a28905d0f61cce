"""Fixtures that give tests REAL llama-server processes from the test bed.

A test that needs a server and cannot get one fails with the reason; it is never skipped.
Servers are shared per configuration for the whole session and all stopped at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import ensure_classic_server, ensure_testbed
from testbed.build_server import BuildError
from testbed.real_models import REAL_MODELS, ModelDownloadError, ensure_real_model
from testbed.server import RunningServer, ServerConfig, ServerPool
from testbed.server import start as testbed_start

TEST_API_KEY = "sk-test-bed-key-0123456789"


@pytest.fixture
def mocked_llama_server(httpx_mock: Any) -> str:
    """The URL of a replayed llama-server that answers its probe (/props, /v1/models, /tokenize),
    for the few behaviours no real server shows on cue; each test adds the replies it needs."""
    url = "http://127.0.0.1:9"
    httpx_mock.add_response(url=url + "/props", json={
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "bos_token": "<s>",
        "eos_token": "</s>", "total_slots": 1, "default_generation_settings": {"n_ctx": 4096}})
    httpx_mock.add_response(url=url + "/v1/models", json={"data": [{"id": "m"}]})
    httpx_mock.add_response(url=url + "/tokenize", json={"tokens": [1]}, is_reusable=True)
    return url


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    try:
        return ensure_testbed()
    except BuildError as exc:
        pytest.fail(f"the llama-server test bed is unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llama_server_binary(testbed: tuple[Path, dict[str, Path]]) -> Path:
    return testbed[0]


@pytest.fixture(scope="session")
def models(testbed: tuple[Path, dict[str, Path]]) -> dict[str, Path]:
    return testbed[1]


@pytest.fixture(scope="session")
def server_pool(llama_server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(llama_server_binary, log_dir=tmp_path_factory.mktemp("server-logs"))
    try:
        yield pool
    finally:
        pool.close()


def _server(pool: ServerPool, config: ServerConfig) -> RunningServer:
    try:
        return pool.get(config)
    except Exception as exc:  # noqa: BLE001 - turned into a loud test failure
        pytest.fail(f"could not start a test-bed llama-server: {exc}", pytrace=False)


@pytest.fixture
def own_server(llama_server_binary: Path, models: dict[str, Path], tmp_path: Path) -> Iterator[RunningServer]:
    """A llama-server of this test's own (1 slot, chatml), which it may kill or stop; stopped and
    checked gone afterwards. Shared servers are never killed."""
    server = testbed_start(llama_server_binary, ServerConfig(model=models["chatml"], slots=1, ctx_size=8192),
                           log_dir=tmp_path)
    try:
        yield server
    finally:
        server.stop()
        assert server.process.poll() is not None


@pytest.fixture(scope="session")
def mistral_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Mistral v0.2 template: no system role, strict user/assistant alternation."""
    return _server(server_pool, ServerConfig(model=models["mistral"]))


@pytest.fixture(scope="session")
def chatml_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    return _server(server_pool, ServerConfig(model=models["chatml"]))


@pytest.fixture(scope="session")
def llama3_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    return _server(server_pool, ServerConfig(model=models["llama3"]))


@pytest.fixture(scope="session")
def hermes_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """A Hermes/Qwen-style template with native tool calls."""
    return _server(server_pool, ServerConfig(model=models["hermes"]))


@pytest.fixture(scope="session")
def keyed_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """ChatML model behind ``--api-key TEST_API_KEY``."""
    return _server(server_pool, ServerConfig(model=models["chatml"], api_key=TEST_API_KEY))


@pytest.fixture(scope="session")
def nojinja_server(server_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Mistral model with ``--no-jinja``: built-in template handling, no tools."""
    return _server(server_pool, ServerConfig(model=models["mistral"], jinja=False))


@pytest.fixture(params=["mistral", "chatml", "llama3", "hermes"])
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each test-bed template in turn."""
    return request.getfixturevalue(f"{request.param}_server")


# --- the classic-dialect server (llama.cpp b2282 = llamafile 0.8-0.9's server) -------------
# It loads the tiny test-bed models (llama arch with output.weight), not SmolLM2 or Gemma 3.
# Which built-in layout it applies: mistral -> llama2 ([INST]); chatml, hermes -> chatml;
# llama3 -> chatml too (b2282 has no Llama 3 layout and falls back).

@pytest.fixture(scope="session")
def classic_binary() -> Path:
    try:
        return ensure_classic_server()
    except BuildError as exc:
        pytest.fail(f"the classic b2282 server is unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def classic_pool(classic_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(classic_binary, log_dir=tmp_path_factory.mktemp("classic-logs"))
    try:
        yield pool
    finally:
        pool.close()


def _classic(pool: ServerPool, model: Path, **options: Any) -> RunningServer:
    try:
        return pool.get(ServerConfig(model=model, classic=True, **options))
    except Exception as exc:  # noqa: BLE001 - turned into a loud test failure
        pytest.fail(f"could not start the classic b2282 server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def classic_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Classic server on the tiny Mistral-template model (its [INST] layout)."""
    return _classic(classic_pool, models["mistral"])


@pytest.fixture(scope="session")
def classic_keyed_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Classic server behind ``--api-key TEST_API_KEY`` (Mistral-template model)."""
    return _classic(classic_pool, models["mistral"], api_key=TEST_API_KEY)


@pytest.fixture(scope="session")
def classic_chatml_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    return _classic(classic_pool, models["chatml"])


@pytest.fixture(scope="session")
def classic_llama3_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    return _classic(classic_pool, models["llama3"])


@pytest.fixture(scope="session")
def classic_hermes_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    return _classic(classic_pool, models["hermes"])


@pytest.fixture(scope="session")
def classic_noslots_server(classic_pool: ServerPool, models: dict[str, Path]) -> RunningServer:
    """Mistral model with ``--slots-endpoint-disable``: the format probe must count instead."""
    return _classic(classic_pool, models["mistral"], extra_args=("--slots-endpoint-disable",))


@pytest.fixture(params=["mistral", "chatml", "llama3", "hermes"])
def any_classic_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each tiny test-bed model the classic server can run, in turn."""
    name = "classic_server" if request.param == "mistral" else f"classic_{request.param}_server"
    return request.getfixturevalue(name)


# --- real small models from PyPI (testbed.real_models) ------------------------------------
# SmolLM2-135M-Instruct and Gemma 3 270M run on the test bed's llama-server only: the classic
# b2282 server cannot load SmolLM2's tied embeddings and knows no Gemma 3. Tests using these
# carry the ``real_model`` marker; a download or start failure fails them loudly.

def _real(pool: ServerPool, key: str) -> RunningServer:
    model = REAL_MODELS[key]
    try:
        path = ensure_real_model(model)
    except ModelDownloadError as exc:
        pytest.fail(f"the real model {key} is unavailable: {exc}", pytrace=False)
    extra = ("--chat-template-file", str(model.chat_template)) if model.chat_template else ()
    # 8192: SmolLM2's training context (llama-server caps -c there); 2 slots are plenty.
    return _server(pool, ServerConfig(model=path, ctx_size=8192, slots=2, extra_args=extra))


@pytest.fixture(scope="session")
def smollm2_server(server_pool: ServerPool) -> RunningServer:
    """SmolLM2-135M-Instruct (Q4_1) with its own ChatML template (which adds a default system prompt)."""
    return _real(server_pool, "smollm2")


@pytest.fixture(scope="session")
def gemma3_server(server_pool: ServerPool) -> RunningServer:
    """Gemma 3 270M (Q4_K_M) with Gemma 3's strict template (testbed/chat_templates/gemma3.jinja)."""
    return _real(server_pool, "gemma3")


@pytest.fixture(params=["smollm2", "gemma3"])
def any_real_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each real model in turn."""
    return request.getfixturevalue(f"{request.param}_server")
