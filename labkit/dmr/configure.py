"""(being built) `docker model configure`: per-model settings such as the context size the engine uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

if TYPE_CHECKING:
    from .server import ModelServer


def routes(server: ModelServer) -> list[Route]:
    """This module's routes, registered by the server before its catch-alls."""
    return []
