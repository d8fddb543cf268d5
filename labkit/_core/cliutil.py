"""What labkit's embedded CLIs (``sbx``, ``docker model``) share: a parser that reports instead of
exiting, dispatch on the first word, tables padded like the real tools', and error lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn


class UsageError(Exception):
    """Bad command-line arguments; the message includes the usage line."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError, so each command chooses its own exit status."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.usage_error(message))

    def usage_error(self, message: str) -> str:
        """The text of a usage error, sbx's way: the usage line, then ``ERROR: …``. (DMR's CLI, like
        cobra, says only the message: its parser overrides this.)"""
        return f"{self.format_usage().rstrip()}\nERROR: {message} (see: {self.prog} --help)"


Command = Callable[[list[str]], int]


def dispatch(argv: Sequence[str], commands: Mapping[str, Command], usage: str, unknown: str) -> int:
    """Run the command ``argv[0]`` names on the rest of ``argv``; its exit status.

    No command prints ``usage`` (exit 2; 0 for ``-h``/``--help``/``help``); an unknown one prints
    ``unknown`` (``{}`` is the word given) and exits 2.
    """
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage)
        return 0 if argv else 2
    command = commands.get(argv[0])
    if command is None:
        return fail(unknown.format(argv[0]), 2)
    return command(list(argv[1:]))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like the real tools' tables (Go's tabwriter: two spaces between columns, no
    borders, no header rule, no trailing blanks)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def fail(message: str, code: int = 1) -> int:
    """Print a user-facing error (prefixed ERROR: unless it already is) and return ``code``."""
    text = message if message.startswith(("ERROR", "usage:")) else f"ERROR: {message}"
    print(text, file=sys.stderr)
    return code


def confirm(question: str, force: bool) -> bool | None:
    """True to go ahead; False when declined; None when no terminal can answer (use -f)."""
    if force:
        return True
    if not sys.stdin.isatty():
        return None
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
