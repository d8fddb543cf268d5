"""The exercises judge what their text asks, accept every answer the text allows, and say what is missing.

Against the real embedded lab of this package (tests/widgets/conftest.py): each exercise's ✗
before the learner's answer and its ✓ after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from widget_helpers import MODEL

from labkit import exercises
from labkit.lab import Lab


def test_model_id_accepts_every_spelling_the_server_answers_to(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    empty = exercises.model_id(lab, "")
    assert not empty.ok and "MY_MODEL_ID is empty (expected until you paste an id)" in empty.line
    for spelling in (lab.model_ids()[0], MODEL):  # "docker.io/ai/smollm2:135M-Q4_1" and "ai/smollm2:135M-Q4_1"
        answered = exercises.model_id(lab, spelling)
        assert answered.ok, answered
        assert answered.line.startswith(f"✓ exercise: the model server answers to '{spelling}'")
    assert "(it lists it as 'docker.io/ai/smollm2:135M-Q4_1')" in exercises.model_id(lab, MODEL).line
    wrong = exercises.model_id(lab, "ai/smollm2:135M")  # the quantization tag left out
    assert not wrong.ok and "does not know 'ai/smollm2:135M'" in wrong.line and "quantization tag" in wrong.line
    assert capsys.readouterr().out.count("exercise:") == 5  # each prints its one line


def test_workspace_file_says_what_is_missing_in_the_learners_words(tmp_path: Path) -> None:
    missing = exercises.workspace_file(str(tmp_path), "hello-from-sandbox.txt", "dmr-test", "the sandbox's hostname")
    assert not missing.ok and "not in the workspace yet (expected until you write it)" in missing.line
    (tmp_path / "hello-from-sandbox.txt").write_text("hello\n")
    wrong = exercises.workspace_file(str(tmp_path), "hello-from-sandbox.txt", "dmr-test", "the sandbox's hostname")
    assert not wrong.ok
    assert "hello-from-sandbox.txt is there, but does not hold the sandbox's hostname ('dmr-test')" in wrong.line
    (tmp_path / "hello-from-sandbox.txt").write_text("dmr-test\n")
    assert exercises.workspace_file(str(tmp_path), "hello-from-sandbox.txt", "dmr-test", "the sandbox's hostname").ok
