"""labkit: the helper package of sbx-dmr-lab.

Notebooks use one object: ``lab = labkit.connect(mode=MODE)`` (see ``labkit.lab``). The
command line is ``labkit`` (see ``labkit.commands.main``). The facade is imported lazily so that
the CLIs (`labkit sbx …`, run once per course command) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lab import Lab

__version__ = "0.1.0"
__all__ = ["Lab", "connect", "__version__"]


def connect(mode: str | None = None, **kwargs: Any) -> Lab:
    """Resolve the mode, start what is embedded, return the `Lab` (see ``labkit.lab.connect``)."""
    from .lab import connect as _connect

    return _connect(mode, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from .lab import Lab

        return Lab
    raise AttributeError(name)
