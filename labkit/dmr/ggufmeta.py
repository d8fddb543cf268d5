"""Model metadata read from the GGUF file itself, formatted the way DMR formats it.

DMR fills a model's ``config`` (parameters, quantization, architecture, size, context,
GGUF key/values) by parsing the file [MR pkg/distribution/format/gguf.go, which uses
gguf-parser-go]. We parse the same file with the ``gguf`` package and apply the same
formatting rules, so `docker model ls` shows what the file really is, never a typed-in label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# gguf-parser-go leaves arrays longer than this (the vocabulary, merges…) out of the map.
MAX_ARRAY = 50

_NUMBER_UNITS = ((1e15, "Q"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))
_BYTE_UNITS = (
    (1 << 50, "Pi"), (1e15, "P"), (1 << 40, "Ti"), (1e12, "T"), (1 << 30, "Gi"), (1e9, "G"),
    (1 << 20, "Mi"), (1e6, "M"), (1 << 10, "Ki"), (1e3, "K"),
)


def _scaled(value: float, units: tuple[tuple[float, str], ...]) -> tuple[str, str]:
    for base, unit in units:
        if value >= base:
            return f"{value / base:.2f}".removesuffix(".00"), unit
    return f"{value:.2f}".removesuffix(".00"), ""


def format_parameters(count: int) -> str:
    """``134515008`` → ``134.52M`` (gguf-parser-go's scalar, spaces removed as DMR does)."""
    if count == 0:
        return "0"
    number, unit = _scaled(count, _NUMBER_UNITS)
    return number + unit


def format_bytes(size: int) -> str:
    """``92403712`` → ``88.12MiB`` (gguf-parser-go's byte scalar, spaces removed)."""
    if size == 0:
        return "0B"
    number, unit = _scaled(size, _BYTE_UNITS)
    return f"{number}{unit}B"


def _go_scalar(value: Any) -> str:
    """One value as Go's ``fmt`` prints it in DMR's map (``%d``, ``%f``, ``%t``, string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:f}"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _field_value(field: Any) -> Any:
    """A reader field's Python value (string, number, bool or list)."""
    contents = getattr(field, "contents", None)
    if callable(contents):
        return contents()
    # Older gguf: decode the parts by hand.
    from gguf import GGUFValueType

    def one(index: int, vtype: Any) -> Any:
        part = field.parts[index]
        if vtype == GGUFValueType.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        return part.tolist()[0]

    if field.types[0] == GGUFValueType.ARRAY:
        return [one(i, field.types[-1]) for i in field.data]
    return one(field.data[0], field.types[0])


def _go_value(field: Any) -> str | None:
    """The map value DMR stores for one GGUF key, or None when it leaves the key out."""
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY:
        if len(field.data) > MAX_ARRAY:
            return None
        if len(field.types) > 1 and field.types[1] == GGUFValueType.ARRAY:
            return ""  # nested arrays are not supported by DMR either
        return ", ".join(_go_scalar(v) for v in _field_value(field))
    return _go_scalar(_field_value(field))


def _quantization(fields: dict[str, Any], tensors: list[Any]) -> str:
    """``general.file_type`` by name (``Q4_1``), else the most common block tensor type."""
    import gguf

    field = fields.get("general.file_type")
    if field is not None:
        try:
            name = gguf.LlamaFileType(int(_field_value(field))).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    counts: dict[str, int] = {}
    for tensor in tensors:
        if tensor.name.startswith("blk."):
            counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    ranked = sorted(counts, key=lambda k: -counts[k])
    if ranked and ranked[0] == "F32" and len(ranked) > 1:
        return ranked[1]
    return ranked[0] if ranked else ""


def read_config(path: Path) -> dict[str, Any]:
    """DMR's model ``config`` for a GGUF file: format, quantization, parameters, … , context_size."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")
    fields = dict(reader.fields)
    tensors = list(reader.tensors)
    metadata: dict[str, str] = {}
    for key, field in fields.items():
        if key.startswith("GGUF."):  # the reader's own header pseudo-fields
            continue
        value = _go_value(field)
        if value is not None:
            metadata[key] = value
    architecture = metadata.get("general.architecture", "").strip() or "llama"
    config: dict[str, Any] = {
        "format": "gguf",
        "quantization": _quantization(fields, tensors),
        "parameters": format_parameters(sum(int(t.n_elements) for t in tensors)),
        "architecture": architecture,
        "size": format_bytes(sum(int(t.n_bytes) for t in tensors)),
        "gguf": metadata,
    }
    context = metadata.get(f"{architecture}.context_length", "")
    if context.isdigit() and 0 < int(context) <= 2**31 - 1:
        config["context_size"] = int(context)
    return config
