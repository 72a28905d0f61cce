"""The fault matrix (issue 11, item 2): every fault a local server can show, against real
test-bed servers or a loopback HTTP server of the test's own that plays the broken one.

Each test asserts the package's typed error, a message that says what to do, a hard bound on
the call (``support.bounded`` / a joined thread) and no leaks: open fds and threads before and
after the provider is closed are equal (after a warm-up call), and servers it started are gone.

| cell | server | error | test |
|---|---|---|---|
| server down | closed port | ServerUnreachableError | test_down.py (async, blocking, first-contact wait) |
| still loading | loopback with llama-server's exact 503 | ServerLoadingError | test_loading.py (async, blocking) |
| killed mid-request | own llama-server, SIGKILL while generating | ServerUnreachableError | test_killed.py::..._mid_request_... |
| killed mid-stream | own llama-server, SIGKILL after 3 chunks | ServerError + partial_text | test_killed.py (async, blocking) |
| 401 | keyed llama-server (JSON), keyed classic (plain text) | AuthenticationError | test_auth.py (wrong key, no key, blocking) |
| template 400 | llama-server with a template that raises | TemplateError | test_template.py |
| context overflow | llama-server (400) and classic (silent cut), 512 per slot | ContextOverflowError | test_overflow.py |
| malformed / non-object JSON | loopback (chat reply, /props) | MalformedResponseError | test_broken_json.py |
| truncated reply (cut after its headers) | loopback (chat reply, /props) | ServerUnreachableError, "before its reply was complete" | test_broken_json.py |
| slow server | loopback that stays silent | ServerTimeoutError | test_slow.py (chat async, probe blocking) |
| busy port | serve.sh on a port a non-llama server holds | serve.sh exit 1; provider MalformedResponseError | test_serve_faults.py, test_not_llama.py; tests/scripts/test_script_serve.py (bare socket) |
| wrong dialect | serve.sh with LLAMAFILE_DIALECT=classic on a 0.10 llamafile | serve.sh exit 1 with the server's complaint | test_serve_faults.py |
| bad .env values | .env file | ConfigurationError naming the variable | test_bad_env.py (async, blocking) |

"""
