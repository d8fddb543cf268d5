"""What the embedded ``sbx`` commands share: a parser that reports instead of exiting, tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """Bad command-line arguments; the message includes the usage line."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError, so each command chooses its own exit status."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().rstrip()}\nERROR: {message} (see: {self.prog} --help)")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like sbx's tabwriter output (two spaces between columns)."""
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
