"""Drive `docker model` through its CLI and return labkit's records, old or new Model Runner.

The argv prefix is a parameter: ``["docker", "model"]`` for the real plugin,
``[python, "-m", "labkit", "model"]`` for labkit's embedded one, which prints the same shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from .. import fixes
from ..errors import ToolError
from ..records import ModelInfo
from . import model_output
from ._proc import Cli, Completed, first_line
from .model_output import ModelStatus


class ModelCli(Cli):
    """`docker model` as typed calls; every known failure raises a ``ToolError`` with the fix."""

    tool = "docker model"
    install_fix = fixes.INSTALL_DOCKER_MODEL
    timeout_fix = f"check that Docker is running: {fixes.DMR_STATUS}"

    def __init__(self, prefix: Sequence[str] = ("docker", "model"), timeout: float = 60.0,
                 pull_timeout: float = 3600.0, fixes: Mapping[str, str] | None = None) -> None:
        super().__init__(prefix, timeout, fixes)
        self.pull_timeout = pull_timeout

    def classify(self, done: Completed) -> ToolError | None:
        return model_output.classify(done.text)

    def ls(self) -> list[ModelInfo]:
        """`docker model ls --json`: the local models with their full ids and tags."""
        return model_output.parse_models(self.run(["ls", "--json"]).out)

    def pull(self, model: str, on_line: Callable[[str], None] | None = None, timeout: float | None = None) -> str:
        """`docker model pull MODEL`, each progress line handed to ``on_line``; returns the final message.

        The final message is `Model pulled successfully` or `Using cached model: <size>`.
        """
        done = self.stream(["pull", model], on_line, timeout=timeout or self.pull_timeout)
        lines = done.out.splitlines()
        return lines[-1].strip() if lines else ""

    def inspect(self, model: str) -> ModelInfo:
        """`docker model inspect MODEL`: the model object, or ``model_not_pulled``."""
        return model_output.model_from_json(json.loads(self.run(["inspect", model]).out))

    def rm(self, model: str, missing_ok: bool = False) -> bool:
        """`docker model rm MODEL`; False when it was not there and ``missing_ok``."""
        try:
            self.run(["rm", model])
        except ToolError as err:
            if missing_ok and err.kind == "model_not_pulled":
                return False
            raise
        return True

    def status(self) -> ModelStatus:
        """`docker model status --json` (text if the JSON is missing); a stopped runner is a status, not an error."""
        args = ["status", "--json"]
        done = self.run(args, check=False)
        if done.code != 0:
            err = self.error(args, done)
            if err.kind == "dmr_not_running":
                return ModelStatus(running=False, detail=first_line(done.text))
            if err.kind != "command_failed" or not done.out.lstrip().startswith("{"):  # no answer about the runner
                raise err
        try:
            return model_output.parse_status(done.out)
        except ValueError:
            raise self.error(args, done) from None
