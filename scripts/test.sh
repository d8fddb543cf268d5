#!/usr/bin/env bash
# Runs the whole test suite: lint, types, then pytest (unit, integration with real processes,
# notebooks, browser) in two worker processes (pytest-xdist; each has its own LABKIT_HOME and
# model port). Each test has a timeout; state goes to a temporary LABKIT_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check"
ruff check labkit tests bench scripts
echo "== mypy"
mypy labkit
echo "== pytest"
exec pytest -q -p no:cacheprovider -n "${LABKIT_TEST_WORKERS:-2}" --dist worksteal "$@"
