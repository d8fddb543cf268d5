"""Model references the way Docker Model Runner reads them (docs/sbx-dmr-facts.md §2.1).

DMR accepts many spellings of one model (`smollm2`, `ai/smollm2`, `ai/smollm2:latest`,
`docker.io/ai/smollm2:latest`, its id). Every lookup in the embedded store goes through
``canonical`` so that all of them land on the same stored tag, exactly as DMR compares
canonical references.
"""

from __future__ import annotations

import re

DEFAULT_ORG = "ai"
DEFAULT_TAG = "latest"
DEFAULT_REGISTRY = "docker.io"
# Registries that are the same as the default one.
_DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "docker.io")

_HEX = re.compile(r"[0-9a-f]+")
# One path component of a repository name (OCI distribution grammar, lowercase).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_HOST = re.compile(r"[a-zA-Z0-9.-]+(?::[0-9]+)?")


def looks_like_id(ref: str) -> bool:
    """A short (12) or full (64) hex model id, as DMR's ``looksLikeID``."""
    return len(ref) in (12, 64) and _HEX.fullmatch(ref) is not None


def looks_like_digest(ref: str) -> bool:
    """A ``sha256:<64 hex>`` digest, as DMR's ``looksLikeDigest``."""
    return ref.startswith("sha256:") and len(ref) == 71 and _HEX.fullmatch(ref[7:]) is not None


def split_tag(ref: str) -> tuple[str, str | None]:
    """(name, tag): a ``:`` is a tag separator only after the last ``/``."""
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:] or None
    return ref, None


def _has_registry(name: str) -> bool:
    first, sep, _ = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def normalize(ref: str) -> str:
    """DMR's ``normalizeModelName`` without id resolution: ``smollm2`` → ``ai/smollm2:latest``.

    Only the name is lowercased; the tag keeps its case. ``hf.co/`` becomes
    ``huggingface.co/``. Ids and digests are returned unchanged.
    """
    ref = ref.strip()
    if not ref or looks_like_id(ref) or looks_like_digest(ref):
        return ref
    if ref.startswith("hf.co/"):
        ref = "huggingface.co/" + ref[len("hf.co/"):]
    name, tag = split_tag(ref)
    if "/" not in name:
        name = f"{DEFAULT_ORG}/{name}"
    return f"{name.lower()}:{tag or DEFAULT_TAG}"


def canonical(ref: str) -> str:
    """The spelling DMR stores since 2026: ``docker.io/ai/smollm2:latest``.

    Two references name the same model exactly when their canonical forms are equal
    (DMR's ``MatchesReference``); ids and digests pass through unchanged.
    """
    norm = normalize(ref)
    if not norm or looks_like_id(norm) or looks_like_digest(norm):
        return norm
    name, tag = split_tag(norm)
    if _has_registry(name):
        host, _, rest = name.partition("/")
        if host in _DOCKER_HUB_ALIASES:
            name = f"{DEFAULT_REGISTRY}/{rest}"
    else:
        name = f"{DEFAULT_REGISTRY}/{name}"
    return f"{name}:{tag}"


def is_valid(ref: str) -> bool:
    """Does ``ref`` parse as a model reference (an invalid one gets ``Invalid model reference``)?"""
    norm = normalize(ref)
    if not norm:
        return False
    if looks_like_id(norm) or looks_like_digest(norm):
        return True
    name, tag = split_tag(norm)
    if tag is None or not _TAG.fullmatch(tag):
        return False
    parts = name.split("/")
    if _has_registry(name):
        if not _HOST.fullmatch(parts[0]):
            return False
        parts = parts[1:]
    return bool(parts) and all(_COMPONENT.fullmatch(p) for p in parts)
