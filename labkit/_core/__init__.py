"""Plumbing every layer uses: state paths, background daemons, the command runner, presenter mode, CLI helpers."""
