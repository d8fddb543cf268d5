# JupyterLab's terminals in the course (scripts/lab.sh sets them up): an interactive bash with the
# user's usual start-up files, then the course's .venv first on PATH, so `labkit`, `labkit shell`
# and the course's Python are there. (A login shell would reset PATH in Debian's /etc/profile.)
[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
if [ -n "${LABKIT_VENV_BIN:-}" ]; then
  case ":$PATH:" in *":$LABKIT_VENV_BIN:"*) ;; *) PATH="$LABKIT_VENV_BIN:$PATH" ;; esac
  export PATH
fi
