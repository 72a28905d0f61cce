#!/usr/bin/env bash
# The one command that runs every test on a fresh machine:
#   1. creates .venv (unless VENV points elsewhere) and installs the package with its test extra,
#   2. builds the real llama-server test bed on first use (cached outside the clone, ~10 min once),
#      and the classic b2282 server (~70 s once),
#   3. runs pytest; extra arguments go to pytest (e.g. ./scripts/test.sh -k tokenize).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'

# Build (or find) the test-bed server before pytest starts, so its progress is visible.
"$VENV/bin/python" -c "import sys; from testbed.build_server import main; sys.exit(main())" >/dev/null
# The classic-dialect server (llama.cpp b2282, what llamafile 0.8-0.9 serve; ~70 s once).
"$VENV/bin/python" -c "import sys; from testbed.build_classic import main; sys.exit(main())" >/dev/null

exec "$VENV/bin/python" -m pytest "$@"
