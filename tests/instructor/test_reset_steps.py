"""`labkit reset`'s exit code follows each step's ``ok``, not the text it prints."""

from __future__ import annotations

import pytest

from labkit.commands import reset


def _steps(monkeypatch: pytest.MonkeyPatch, *steps: reset.Step) -> None:
    monkeypatch.setattr(reset, "reset", lambda: list(steps))


def test_a_failed_step_is_marked_and_sets_the_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    _steps(monkeypatch, reset.Step("policy: already the balanced preset with no local rules"),
           reset.Step("sandbox a: not removed (busy)", ok=False))
    assert reset.main([]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == ["policy: already the balanced preset with no local rules",
                                    "✗ sandbox a: not removed (busy)"]
    assert out.err == "labkit reset: some steps failed (see ✗ above); fix them and run it again\n"


def test_a_line_that_only_starts_with_a_cross_is_not_a_failure(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]):
    _steps(monkeypatch, reset.Step("✗-named sandbox: removed"), reset.Step("models: kept (ai/smollm2)"))
    assert reset.main([]) == 0
    assert capsys.readouterr().out.splitlines() == ["✗-named sandbox: removed", "models: kept (ai/smollm2)"]
