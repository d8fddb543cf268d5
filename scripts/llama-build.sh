#!/usr/bin/env bash
# Installs llama-cpp-python (the version pyproject.toml pins) built for every CPU of this
# architecture, not only this one: see labkit/dmr/build.py for the flags and the check.
# A library already installed and portable is kept (seconds); one built for another CPU, here
# or in pip's wheel cache (whose key ignores CMAKE_ARGS), is rebuilt; --force rebuilds anyway.
# Usage: scripts/llama-build.sh [--force] [PYTHON]   (PYTHON: the environment's, default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
force=""
if [ "${1:-}" = --force ]; then force=1; shift; fi
py=${1:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
pin=$(grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | tr -d '"')
check() { "$py" labkit/dmr/build.py check >/dev/null 2>&1; }
have=$("$py" -m pip show llama-cpp-python 2>/dev/null | sed -n 's/^Version: //p' || true)

if [ -z "$force" ] && [ "llama-cpp-python==$have" = "$pin" ] && check; then exit 0; fi
export CMAKE_ARGS="$("$py" labkit/dmr/build.py cmake-args) ${CMAKE_ARGS:-}"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
say "installing $pin; compiling llama.cpp for any $(uname -m) CPU the first time (about 3 minutes on 2 cores)"
start=$SECONDS
if [ -n "$force" ]; then
  "$py" -m pip cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
  "$py" -m pip install -q --force-reinstall --no-deps "$pin"
else
  "$py" -m pip install -q "$pin"
fi
if ! check; then
  # pip took a wheel from its cache, built earlier for one CPU: remove it and build again.
  say "the cached llama.cpp build is not portable ($("$py" labkit/dmr/build.py check | tail -1)); rebuilding"
  "$py" -m pip cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
  "$py" -m pip install -q --force-reinstall --no-deps "$pin"
fi
if ! check; then
  "$py" labkit/dmr/build.py check >&2 || true
  say "llama.cpp was built with CPU-specific instructions despite CMAKE_ARGS=$CMAKE_ARGS" >&2
  exit 1
fi
((SECONDS - start < 5)) || say "llama-cpp-python ready in $((SECONDS - start)) s"
