"""Regenerate the course notebooks, with real outputs, in one command.

    .venv/bin/python scripts/build_notebooks.py            # convert + execute all (embedded mode)
    .venv/bin/python scripts/build_notebooks.py --no-execute

The source of each notebook is a readable jupytext "percent" file in ``notebooks_src/``;
``notebooks/NN_*.ipynb`` are generated from them, executed headless in order with papermill
in embedded mode on a fresh state folder, and saved with their outputs (so a static viewer
shows them). Absolute paths of the machine that ran them are rewritten to ``~`` or made
relative; papermill's timing metadata is dropped so diffs show only what changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks_src"
OUT = ROOT / "notebooks"
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def sources() -> list[Path]:
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def convert(src: Path) -> nbformat.NotebookNode:
    """The notebook for a percent-format source, without outputs."""
    nb = jupytext.read(src)
    nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def target(src: Path) -> Path:
    return OUT / (src.stem + ".ipynb")


def scrub(nb: nbformat.NotebookNode, home_dir: Path) -> nbformat.NotebookNode:
    """Make outputs machine-independent: paths under ``~``, no timing metadata, and each cell's
    stream chunks merged, a line redrawn with ``\r`` kept as its last state (as JupyterLab shows it)."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    replacements = [(str(home_dir), "~/.labkit"), (str(ROOT), "."), (str(Path.home()), "~")]
    nb.metadata.pop("papermill", None)
    coalesce = CoalesceStreamsPreprocessor()
    for index, cell in enumerate(nb.cells):
        coalesce.preprocess_cell(cell, {}, index)
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = _replace(out["text"], replacements)
            for key, value in out.get("data", {}).items():
                if isinstance(value, str) and key.startswith("text/"):
                    out["data"][key] = _replace(value, replacements)
    return nb


def _replace(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def execute(paths: list[Path], home_dir: Path, env: dict[str, str]) -> None:
    import papermill  # imported here: converting alone does not need it

    os.environ.update(env)
    for path in paths:
        t0 = time.monotonic()
        print(f"running {path.name} …", flush=True)
        papermill.execute_notebook(str(path), str(path), cwd=str(OUT), kernel_name="python3",
                                   progress_bar=False, request_save_on_cell_execute=False)
        nb = scrub(nbformat.read(path, as_version=4), home_dir)
        nbformat.write(nb, path)
        print(f"  done in {time.monotonic() - t0:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true", help="only convert the sources")
    parser.add_argument("only", nargs="*", help="notebook name prefixes to build (default: all)")
    args = parser.parse_args(argv)
    chosen = [s for s in sources() if not args.only or any(s.stem.startswith(p) for p in args.only)]
    for src in chosen:
        nbformat.write(convert(src), target(src))
        print(f"converted {src.name} -> notebooks/{target(src).name}")
    if args.no_execute:
        return 0
    from labkit.runtime import probes

    if not probes.port_free(12434):
        print("port 12434 is taken (a running lab?): stop it first (labkit down) so the committed outputs "
              "show the course's real port", file=sys.stderr)
        return 1
    home_dir = Path.home() / ".labkit-build-notebooks"
    shutil.rmtree(home_dir, ignore_errors=True)
    env = {"LABKIT_HOME": str(home_dir), "LABKIT_MODE": "embedded", "LABKIT_DMR_PORT": "12434"}
    try:
        execute([target(s) for s in chosen], home_dir, env)
    finally:
        from labkit.commands import up as lab_services

        lab_services.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
