#!/usr/bin/env bash
# Starts the course: pre-flight check, the embedded lab where live tools are absent, then
# JupyterLab on work/, the learner's copies of notebooks/ (its terminals get labkit on PATH:
# scripts/terminal.bashrc). When
# JupyterLab stops (Ctrl+C), the embedded lab stops too; models, sandboxes and rules are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export LABKIT_VENV_BIN="$PWD/.venv/bin"
export PATH="$LABKIT_VENV_BIN:$PATH"
labkit doctor || echo "(labkit doctor found problems above; the course may still run in embedded mode)"
labkit up
# Learners work on copies: the tracked notebooks/ are copied to work/ (ignored by git), so running the
# course never rewrites them and a later `git pull` cannot conflict. Only missing files are copied:
# a notebook you ran keeps your outputs; delete it from work/ to get the fresh one back.
work=${LABKIT_WORK_DIR:-work}
mkdir -p "$work"
cp -n notebooks/*.ipynb notebooks/INSTRUCTOR.md "$work"/
args=(--notebook-dir="$work" --ServerApp.ip=127.0.0.1
      "--ServerApp.terminado_settings={'shell_command': ['bash', '--rcfile', '$PWD/scripts/terminal.bashrc', '-i']}")
[ "$(id -u)" = 0 ] && args+=(--allow-root)
[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ] || args+=(--no-browser)
echo "Open the http://127.0.0.1:…/lab?token=… address printed below in a browser, then notebook 00."
echo "Your work is saved in $work/ (copies of notebooks/; delete one there to get it fresh)."
echo "On a remote machine: ssh -L PORT:127.0.0.1:PORT THAT-MACHINE (PORT: the one in that address), then open it here."
echo "Stop with Ctrl+C (twice): JupyterLab stops, then the embedded lab."
trap : INT  # Ctrl+C is JupyterLab's to handle (a handler, not SIG_IGN, which JupyterLab would inherit)
status=0
jupyter lab "${args[@]}" "$@" || status=$?
trap - INT
echo
labkit down
exit "$status"
