"""The course's widgets: model picker, prompt panel, policy switch, audit view, checkpoint checklist.

Every widget keeps its state in the kernel (ipywidgets 8), so it works headless under
papermill and in tests (set ``.value``, call ``.click()``), and renders in JupyterLab and
Notebook 7. Each one drives the real lab through ``Lab`` — the model API, `sbx exec`, `sbx
policy`, the audit log — and shows a tool failure as one line with the fix, never a traceback.
Presenter mode (``LABKIT_PRESENTER``, see ``labkit._core.presenter.enabled``) enlarges the text.

The modules, one job each:

- ``_panel``: the shared plumbing (status line coloured from ``ok``, failures caught, styles)
- ``model_picker``, ``prompt_panel``, ``policy_switch``, ``audit_view``, ``checklist``: one widget each
- ``prompt_state``: the prompt panel's states and their status lines, as data (pure)
- ``stream``: the SSE parser and the reply's metrics (pure)

Dependencies go one way: the widgets import ``labkit.checks`` (results, the rule in force, the
checkpoint), never the reverse.
"""

from __future__ import annotations

from ._panel import BLOCKED_BG
from .audit_view import AuditRow, AuditView
from .checklist import Checklist, checklist
from .model_picker import ModelPicker
from .policy_switch import PolicySwitch
from .prompt_panel import PromptPanel
from .prompt_state import PromptState
from .stream import Metrics, SseReply, parse_sse

__all__ = [
    "ModelPicker", "PromptPanel", "PromptState", "PolicySwitch", "AuditView", "AuditRow", "Checklist",
    "checklist", "Metrics", "SseReply", "parse_sse", "BLOCKED_BG",
]
