"""Adapters over the `sbx` and `docker model` CLIs and the model HTTP API, for both modes.

The CLIs' argv prefix is a parameter (the real tools, or labkit's embedded ones): the same
parsers turn either's output into ``labkit.records``, and every known failure into a
``ToolError`` with the fix.
"""

from ..errors import ToolError
from .model_api import ChatChunk, ChatResult, ModelApi
from .model_cli import ModelCli
from .model_output import ModelStatus
from .sbx_cli import SbxCli
from .sbx_output import SbxVersion

__all__ = ["ChatChunk", "ChatResult", "ModelApi", "ModelCli", "ModelStatus", "SbxCli", "SbxVersion", "ToolError"]
