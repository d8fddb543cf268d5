"""Model reference normalization (reference §2.1): every DMR spelling lands on one canonical tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.dmr import catalog, refs

pytestmark = pytest.mark.fast

SPELLINGS = {
    "smollm2": "docker.io/ai/smollm2:latest",
    "ai/smollm2": "docker.io/ai/smollm2:latest",
    "ai/smollm2:latest": "docker.io/ai/smollm2:latest",
    "docker.io/ai/smollm2:latest": "docker.io/ai/smollm2:latest",
    "index.docker.io/ai/smollm2:latest": "docker.io/ai/smollm2:latest",
    "AI/SmolLM2:135M-Q4_1": "docker.io/ai/smollm2:135M-Q4_1",  # only the name is lowercased
    "ai/smollm2:135M-Q4_1": "docker.io/ai/smollm2:135M-Q4_1",
    "docker.io/ai/smollm2:135M-Q4_1": "docker.io/ai/smollm2:135M-Q4_1",
    "hf.co/bartowski/Model-GGUF:Q4_K_M": "huggingface.co/bartowski/model-gguf:Q4_K_M",
    "myorg/thing": "docker.io/myorg/thing:latest",
}


@pytest.mark.parametrize(("spelling", "expected"), SPELLINGS.items())
def test_canonical_spellings(spelling: str, expected: str) -> None:
    assert refs.canonical(spelling) == expected


def test_normalize_keeps_dmr_short_form() -> None:
    assert refs.normalize("smollm2") == "ai/smollm2:latest"
    assert refs.normalize("ai/smollm2:135M-Q4_1") == "ai/smollm2:135M-Q4_1"


def test_ids_and_digests_pass_through() -> None:
    digest = "sha256:" + "ab" * 32
    assert refs.looks_like_digest(digest) and refs.canonical(digest) == digest
    assert refs.looks_like_id("0123456789ab") and refs.looks_like_id("f" * 64)
    assert not refs.looks_like_id("0123456789") and not refs.looks_like_id("g" * 12)


def test_validity() -> None:
    assert refs.is_valid("ai/smollm2") and refs.is_valid("localhost:5000/x/y:1.0")
    assert refs.is_valid("ai/x:")  # an empty tag falls back to `latest`, as in DMR
    for bad in ("", "  ", "ai/smol lm2", "ai//x", "-x", "ai/x:t@g"):
        assert not refs.is_valid(bad), bad


def test_catalog_answers_to_its_tags_only() -> None:
    assert catalog.find("ai/smollm2:135M-Q4_1") is catalog.SHIPPED[0]
    assert catalog.find("smollm2") is catalog.SHIPPED[0]  # `latest`: see catalog.py
    assert catalog.find("ai/smollm2:360M-Q4_K_M") is None
    assert catalog.find("ai/gemma3") is None


_component = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,4})?", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)


@given(name=_component, tag=_tag)
def test_every_spelling_of_a_tag_is_one_model(name: str, tag: str) -> None:
    canonical = refs.canonical(f"{name}:{tag}")
    for spelling in (f"ai/{name}:{tag}", f"docker.io/ai/{name}:{tag}", f"index.docker.io/ai/{name}:{tag}"):
        assert refs.canonical(spelling) == canonical
    assert refs.canonical(canonical) == canonical  # idempotent
    assert refs.split_tag(canonical)[1] == tag  # the tag keeps its case


@given(name=_component)
def test_no_tag_means_latest(name: str) -> None:
    assert refs.canonical(name) == refs.canonical(f"ai/{name}:latest") == f"docker.io/ai/{name}:latest"
