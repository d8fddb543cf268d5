"""(being built) DMR's request log: the last 10 inference requests per model (`GET /engines/requests`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .server import ModelServer


class Recorder:
    """ASGI middleware that will record inference requests and their (re-assembled) answers."""

    def __init__(self, app: ASGIApp, server: ModelServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def routes(server: ModelServer) -> list[Route]:
    """This module's routes, registered by the server before its catch-alls."""
    return []
