"""The model picker: a model of the local store, and the id an OpenAI client sends for it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import ipywidgets as W

from .. import fixes
from ..checks.result import verdict_line
from ..records import ModelInfo, display_name
from ._panel import Panel, font_size

if TYPE_CHECKING:
    from ..lab import Lab


def _client_id(model: ModelInfo, ids: list[str]) -> str:
    """The id an OpenAI client sends for ``model``: the one `/v1/models` lists, else its first tag."""
    for tag in model.tags:
        if tag in ids:
            return tag
    return model.tags[0] if model.tags else model.id


def _not_in_store(model: str) -> str:
    return verdict_line(False, f"{model} is not in the local model store", fixes.pull_model(model))


class ModelPicker(Panel):
    """Pick a model of the local store; ``.value`` is the id an OpenAI client sends."""

    kind = "model picker"

    def __init__(self, lab: Lab, value: str | None = None, description: str = "model") -> None:
        super().__init__()
        self.lab = lab
        self.models: list[ModelInfo] = []
        self._ids: list[str] = []
        self._wanted = value
        self.dropdown = W.Dropdown(description=description, layout=W.Layout(width="min(100%, 34em)"))
        self.refresh_button = W.Button(description="refresh", icon="refresh", tooltip="read the model store again",
                                       layout=W.Layout(width="auto"))
        self.details = W.HTML()
        self.dropdown.observe(lambda _: self._show_details(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([self.dropdown, self.refresh_button]), self.details, self._status])
        self.refresh()

    @property
    def value(self) -> str | None:
        return self.dropdown.value

    @value.setter
    def value(self, wanted: str) -> None:
        """Accepts the client id, any tag or the `docker model ls` name (ai/ and :latest optional)."""
        self._wanted = wanted
        match = self._match(wanted)
        if match is None:
            self._set_status(_not_in_store(wanted), ok=False)
            return
        self.dropdown.value = match
        self._set_status("")

    @property
    def model(self) -> ModelInfo | None:
        """The selected model's record (size, quantization, parameters, …)."""
        return next((m for m in self.models if _client_id(m, self._ids) == self.value), None)

    def refresh(self) -> list[ModelInfo]:
        """Read the store from the model API (`GET /models` and `GET …/v1/models`)."""
        with self._guard():
            self.models = self.lab.models()
            self._ids = self.lab.model_ids()
            previous = self.value
            self.dropdown.options = [(f"{m.name} · {m.size} · {m.quantization}", _client_id(m, self._ids))
                                     for m in self.models]
            if not self.models:
                self._set_status(verdict_line(False, "the local model store is empty",
                                              fixes.pull_model(self._wanted or "ai/smollm2")), ok=False)
                return self.models
            self._set_status("")
            chosen = self._match(self._wanted) if self._wanted else None
            if self._wanted and chosen is None:
                self._set_status(_not_in_store(self._wanted), ok=False)
            options = [v for _, v in self.dropdown.options]
            self.dropdown.value = chosen or (previous if previous in options else options[0])
            self._show_details()
        return self.models

    def _match(self, wanted: str) -> str | None:
        name = display_name(wanted)
        for m in self.models:
            if wanted in (m.id, *m.tags) or name in {display_name(t) for t in m.tags}:
                return _client_id(m, self._ids)
        return None

    def _show_details(self) -> None:
        m = self.model
        if m is None:
            self.details.value = ""
            return
        facts = " · ".join(x for x in (m.parameters and f"{m.parameters} parameters", m.architecture,
                                       m.quantization, m.size, m.context and f"context {m.context}") if x)
        self.details.value = (f'<div style="{font_size()}">id sent by clients: <code>{html.escape(self.value or "")}'
                              f"</code><br><small>{html.escape(facts)}</small></div>")
