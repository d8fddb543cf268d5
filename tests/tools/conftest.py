"""Fixtures for the live adapters' contract tests: the fake `sbx` and `docker` on PATH, one state dir per test."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest

from labkit.tools.model_cli import ModelCli
from labkit.tools.sbx_cli import SbxCli

FAKES = Path(__file__).resolve().parent.parent / "fakes" / "bin"
SBX_VERSIONS = ["0.23.0", "0.30.0", "0.34.0", "0.42.1"]
DMR_VARIANTS = ["old", "new"]


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH finds the fakes first, and this interpreter as their python3 (a pyenv shim costs 0.2 s a
    call); their state lives in the test's tmp dir. Returns the state dir."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKES), str(Path(sys.executable).parent),
                                                os.environ.get("PATH", "")]))
    monkeypatch.setenv("FAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return tmp_path / "state"


@pytest.fixture
def sbx_versions() -> list[str]:
    return list(SBX_VERSIONS)


@pytest.fixture(params=SBX_VERSIONS)
def version(request: pytest.FixtureRequest, fake_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FAKE_SBX_VERSION", request.param)
    return request.param


@pytest.fixture
def sbx(version: str) -> SbxCli:
    return SbxCli(["sbx"], timeout=30)


@pytest.fixture(params=DMR_VARIANTS)
def variant(request: pytest.FixtureRequest, fake_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FAKE_DMR_VARIANT", request.param)
    return request.param


@pytest.fixture
def model_cli(variant: str) -> ModelCli:
    return ModelCli(["docker", "model"], timeout=30)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "dmr-test"
    path.mkdir()
    return path


class LogSeeder:
    """Puts aggregated log rows into the fake sbx's state (the fake has no proxy to produce them)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "sbx.json"

    def __call__(self, rows: Iterable[dict]) -> None:
        state = json.loads(self.path.read_text())
        state["log"] = list(rows)
        self.path.write_text(json.dumps(state))

    @staticmethod
    def row(vm: str, host: str, rule: str, blocked: bool, count: int, when: datetime, proxy: str = "forward",
            reason: str = "") -> dict:
        iso = when.astimezone().isoformat()
        return {"vm_name": vm, "host": host, "proxy_type": proxy, "rule": rule, "reason": reason, "blocked": blocked,
                "count": count, "last_seen": iso, "since": iso}


@pytest.fixture
def seed_log(fake_env: Path) -> LogSeeder:
    return LogSeeder(fake_env)
