"""`docker model package --gguf PATH NAME` for embedded mode: a local GGUF file into the store.

DMR's CLI builds an OCI artifact from the file and loads it into the runner's content store
(cmd/cli/commands/package.go). Embedded mode has no artifacts: the CLI checks the file and the
name with DMR's wording, then ``Store.package`` copies the file in and tags it. The server reads
the store's index on every request, so the model can be served at once, like a pulled one.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import refs
from .store import Progress, Store, StoredModel

GGUF_MAGIC = b"GGUF"


class PackageError(Exception):
    """Why a file or a name cannot be packaged, in DMR's words (``str()`` is the cause)."""


def go_quote(text: str) -> str:
    """Go's ``%q`` for ordinary text (DMR quotes paths and references with it)."""
    return json.dumps(text, ensure_ascii=False)


def check_name(name: str) -> str:
    """The target reference, or DMR's ``invalid tag`` error (``reference.NewTag``)."""
    repo, _ = refs.split_tag(name.strip())
    if refs.looks_like_digest(name.strip()):
        raise PackageError(f"invalid tag: reference {go_quote(name)} is not a tag")
    if repo != repo.lower():
        raise PackageError(f"invalid tag: invalid reference {go_quote(name)}: invalid reference format: "
                           f"repository name must be lowercase")
    if not refs.is_valid(name) or refs.looks_like_id(name.strip()):
        raise PackageError(f"invalid tag: invalid reference {go_quote(name)}: invalid reference format")
    return name.strip()


def check_gguf(path: Path) -> Path:
    """The file, once it is known to be a readable GGUF file (DMR: ``add gguf file: …``)."""
    if path.suffix.lower() != ".gguf":
        raise PackageError(f"add gguf file: detect format: unable to detect format from path: {path} "
                           f"(file type: unknown)")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise PackageError(f"add gguf file: open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise PackageError(f"add gguf file: read {path}: is a directory") from None
    except OSError as exc:
        raise PackageError(f"add gguf file: open {path}: {(exc.strerror or str(exc)).lower()}") from None
    if magic != GGUF_MAGIC:
        raise PackageError(f"add gguf file: {path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    return path


def package_gguf(path: Path, name: str, progress: Progress | None = None,
                 store: Store | None = None) -> tuple[StoredModel, bool]:
    """Add a checked GGUF file under ``name``; (model, was its content already stored)."""
    try:
        return (store or Store()).package(path, name, progress)
    except OSError as exc:  # reading the file or writing the copy (a full disk, permissions)
        raise PackageError(f"failed to load packaged model: {exc}") from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # the magic matched, the metadata did not parse
        raise PackageError(f"add gguf file: {path} is not a valid GGUF file ({type(exc).__name__}: {exc})") from None
