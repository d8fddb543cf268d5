"""The prompt panel's text box: a textarea that also sends on Ctrl+Enter or Shift+Enter.

ipywidgets' own Textarea keeps every key event in the browser, so a shortcut needs a few lines
of browser code; anywidget carries them (an ES module in ``_esm``), with no build step and no
extension to install beyond its wheel. The state stays kernel-side like any widget's: ``value``
is the text, and ``submits`` counts the shortcut's presses (the panel observes it), so headless
code and tests use ``.value = …`` and ``.submit()`` and never need a browser.
"""

from __future__ import annotations

import anywidget
import traitlets

_ESM = """
function render({ model, el }) {
  const box = document.createElement("textarea");
  box.className = "lk-prompt widget-textarea";
  box.setAttribute("data-lm-suppress-shortcuts", "true");  // JupyterLab's own keys stay out
  box.rows = model.get("rows");
  box.placeholder = model.get("placeholder");
  box.value = model.get("value");
  box.title = "Ctrl+Enter or Shift+Enter sends";
  Object.assign(box.style, { width: "min(100%, 48em)", boxSizing: "border-box", font: "inherit",
                             padding: "4px 6px", resize: "vertical" });
  box.addEventListener("input", () => { model.set("value", box.value); model.save_changes(); });
  box.addEventListener("keydown", (event) => {
    event.stopPropagation();  // as ipywidgets' Textarea: typing never runs notebook commands
    if (event.key === "Enter" && (event.ctrlKey || event.shiftKey || event.metaKey)) {
      event.preventDefault();
      model.set("value", box.value);
      model.set("submits", model.get("submits") + 1);
      model.save_changes();
    }
  });
  model.on("change:value", () => { if (box.value !== model.get("value")) box.value = model.get("value"); });
  model.on("change:disabled", () => { box.disabled = model.get("disabled"); });
  box.disabled = model.get("disabled");
  el.appendChild(box);
}
export default { render };
"""


class PromptBox(anywidget.AnyWidget):
    """A textarea whose Ctrl/Shift+Enter counts a submit; ``on_submit`` callbacks run on each."""

    _esm = _ESM
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.Int(3).tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    submits = traitlets.Int(0).tag(sync=True)

    def submit(self) -> None:
        """What the shortcut does, from Python (tests, headless runs)."""
        self.submits += 1
