"""The model store's own rules (DMR's DeleteModel/AddTags), on a copy of the session's store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labkit.dmr import ggufmeta
from labkit.dmr.store import InvalidReference, ModelNotFound, NotShipped, Store, TagConflict

from .conftest import REF, TAG, Session


@pytest.fixture
def store(pulled: Session, tmp_path: Path) -> Store:
    shutil.copy(pulled.store.index, tmp_path / "index.json")
    return Store(tmp_path)


def test_pull_is_cached_and_tags_exactly_what_was_asked(store: Store) -> None:
    progress: list[tuple[int, int]] = []
    model, cached = store.pull("docker.io/ai/smollm2:latest", lambda done, total: progress.append((done, total)))
    assert cached and progress == []  # same file, same size and mtime: nothing to read again
    assert model.tags == [TAG, "docker.io/ai/smollm2:latest"]
    assert store.get("smollm2") is not None and store.get("ai/smollm2:135M-Q4_1").id == model.id


def test_delete_rules(store: Store) -> None:
    model, _ = store.pull("ai/smollm2")
    with pytest.raises(TagConflict, match='unable to delete "' + model.id[7:19]):
        store.delete(model.id[7:19])  # an id with two tags needs force
    assert store.delete("smollm2") == [{"Untagged": "docker.io/ai/smollm2:latest"}]
    store.pull("ai/smollm2")
    assert store.delete(model.id, force=True) == [
        {"Untagged": TAG}, {"Untagged": "docker.io/ai/smollm2:latest"}, {"Deleted": model.id}]
    assert store.models() == []
    with pytest.raises(ModelNotFound):
        store.delete(REF)


def test_pull_refusals(store: Store) -> None:
    with pytest.raises(NotShipped):
        store.pull("ai/gemma3")
    with pytest.raises(InvalidReference):
        store.pull("Not A Name")


def test_unit_formatting_matches_gguf_parser_go() -> None:
    assert ggufmeta.format_parameters(134_515_008) == "134.52M"
    assert ggufmeta.format_parameters(7_000_000_000) == "7B"
    assert ggufmeta.format_bytes(96_572_416) == "92.10MiB"
    assert ggufmeta.format_bytes(268_800_000) == "256.35MiB"
    assert ggufmeta.format_bytes(999) == "999B"
