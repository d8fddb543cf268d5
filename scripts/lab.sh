#!/usr/bin/env bash
# Starts the course: pre-flight check, the embedded lab where live tools are absent, then
# JupyterLab on notebooks/ (its terminals get labkit on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
labkit doctor || echo "(labkit doctor found problems above; the course may still run in embedded mode)"
labkit up
args=(--notebook-dir=notebooks --ServerApp.ip=127.0.0.1)
[ "$(id -u)" = 0 ] && args+=(--allow-root)
[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ] || args+=(--no-browser)
exec jupyter lab "${args[@]}" "$@"
