"""Moved to :mod:`labkit.errors` (one error tree); this name stays only for modules not yet updated."""

from ..errors import ToolError, refix

__all__ = ["ToolError", "refix"]
