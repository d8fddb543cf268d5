"""(being built) The ollama API of the embedded Docker Model Runner, a translator onto chat completions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

if TYPE_CHECKING:
    from .server import ModelServer


def routes(server: ModelServer) -> list[Route]:
    """This API's routes, registered by the server before its catch-alls."""
    return []
