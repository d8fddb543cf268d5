"""`docker model package --gguf PATH NAME`: a local GGUF file into the embedded store, then served."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from labkit.dmr import catalog
from labkit.dmr.store import Store

from .conftest import REF, Session
from .test_cli import run

DONE = ["Loading model to Model Runner...", "", "Model loaded successfully"]


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = catalog.find(catalog.PRIMARY_REFERENCE).locate()
    assert path is not None
    return path


def package(capsys: pytest.CaptureFixture[str], path: Path | str, name: str) -> tuple[int, str, str]:
    return run(capsys, "package", "--gguf", str(path), name)


def ask(http: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}
    return http.post("/engines/v1/chat/completions", json=body)


def test_a_copy_of_the_shipped_file_is_served_under_its_new_name(
        http: httpx.Client, shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "my-smol.gguf"
    shutil.copyfile(shipped, copy)
    code, out, err = package(capsys, copy, "labkit-test/smol:copy")
    assert code == 0, err
    assert err.splitlines() == [f'Adding GGUF file from "{copy}"', *DONE]
    assert re.fullmatch(r"Transferred: \d+\.\d\d MB\n", out)
    pulled = http.get(f"/models/{REF}").json()
    mine = http.get("/models/labkit-test/smol:copy").json()
    assert mine["id"] == pulled["id"] and "docker.io/labkit-test/smol:copy" in mine["tags"]  # same bytes, one model
    answer = ask(http, "labkit-test/smol:copy")
    assert answer.status_code == 200 and answer.json()["model"] == "labkit-test/smol:copy"
    code, out, _ = run(capsys, "rm", "labkit-test/smol:copy")
    assert code == 0 and out == "Untagged: docker.io/labkit-test/smol:copy\n"  # the pulled tag keeps the model


def test_new_content_is_copied_into_the_store(http: httpx.Client, shipped: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    variant = tmp_path / "variant.gguf"
    shutil.copyfile(shipped, variant)
    with open(variant, "ab") as fh:
        fh.write(b"labkit: trailing bytes, so the digest differs")
    code, _, err = package(capsys, variant, "labkit-test/variant")
    assert code == 0 and err.splitlines()[-1] == "Model loaded successfully"
    model = http.get("/models/labkit-test/variant").json()
    assert model["id"] != http.get(f"/models/{REF}").json()["id"]
    assert model["config"]["parameters"] == "134.52M" and model["tags"] == ["docker.io/labkit-test/variant:latest"]
    variant.unlink()  # the store has its own copy
    try:
        assert ask(http, "labkit-test/variant").status_code == 200
        code, out, _ = run(capsys, "ls")
        assert code == 0 and any("labkit-test/variant" in line for line in out.splitlines())
    finally:
        assert run(capsys, "rm", "labkit-test/variant")[0] == 0


def test_bad_input_gets_one_line_and_changes_nothing(pulled: Session, shipped: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = httpx.get(pulled.base_url + "/models").json()
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just some text, not a model\n")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n")
    cases = {
        (tmp_path / "missing.gguf", "labkit-test/x"): f"add gguf file: open {tmp_path / 'missing.gguf'}: "
                                                      "no such file or directory",
        (not_gguf, "labkit-test/x"): f"add gguf file: {not_gguf} is not a GGUF file",
        (text_file, "labkit-test/x"): f"add gguf file: detect format: unable to detect format from path: {text_file}",
        (shipped, "Labkit-Test/X"): 'invalid tag: invalid reference "Labkit-Test/X": invalid reference format',
        (shipped, "bad name!"): 'invalid tag: invalid reference "bad name!": invalid reference format',
    }
    for (path, name), cause in cases.items():
        code, out, err = package(capsys, path, name)
        assert (code, out) == (1, ""), name
        (line,) = err.splitlines()
        assert line.startswith(f"Failed to package model: {cause}"), line
    assert httpx.get(pulled.base_url + "/models").json() == before
    assert not list(Store().blobs.glob(".incoming.*"))


def test_package_usage_errors(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "package", "labkit-test/x")
    assert code == 1 and err.startswith("One of --gguf, --safetensors-dir, --dduf, or --from is required.")
    code, _, err = run(capsys, "package", "--gguf", "relative.gguf", "labkit-test/x")
    assert code == 1 and err.startswith("GGUF path must be absolute.")
    code, _, err = run(capsys, "package", "--gguf", "/x.gguf")
    assert code == 1 and err.startswith("'docker model package' requires 1 argument")
    code, _, err = run(capsys, "package", "--from", REF, "labkit-test/x")
    assert code == 1 and len(err.splitlines()) == 1 and "LABKIT_MODE=live" in err
