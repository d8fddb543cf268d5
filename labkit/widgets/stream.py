"""Reading a streamed chat completion: the SSE parser, the line sink, and the reply's latency and speed.

Pure: no widgets, no network, no clock (the caller passes the times). The prompt panel feeds
it `curl -sN` output line by line as it arrives, then parses the whole output once more for
the authoritative reply.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metrics:
    """Latency and speed of one reply, measured in the kernel as the chunks arrived."""

    first_token_s: float | None
    total_s: float
    tokens: int
    counted_from: str  # "usage" (the server's count) | "chunks" (one per streamed delta)

    @classmethod
    def measure(cls, first_token_s: float | None, total_s: float, chunks: int,
                usage: Mapping[str, Any] | None) -> Metrics:
        """The server's ``usage.completion_tokens`` when it sent one, else one token per streamed chunk."""
        counted = usage.get("completion_tokens") if usage else None
        if counted:
            return cls(first_token_s, total_s, int(counted), "usage")
        return cls(first_token_s, total_s, chunks, "chunks")

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed after the first token: (tokens - 1) / (total - first token)."""
        if self.first_token_s is None or self.tokens < 2 or self.total_s <= self.first_token_s:
            return None
        return (self.tokens - 1) / (self.total_s - self.first_token_s)

    def line(self) -> str:
        first = f"{self.first_token_s:.2f} s" if self.first_token_s is not None else "—"
        speed = f"{self.tokens_per_s:.1f} tokens/s" if self.tokens_per_s is not None else "— tokens/s"
        return (f"first token {first} · total {self.total_s:.2f} s · {self.tokens} tokens "
                f"({'usage' if self.counted_from == 'usage' else 'counted chunks'}) · {speed}")


@dataclass
class SseReply:
    """What an OpenAI-style SSE stream said: the text, the usage, the HTTP status, and anything else."""

    content: str = ""
    chunks: int = 0
    usage: dict[str, Any] | None = None
    status: int | None = None
    other: list[str] = field(default_factory=list)  # a 403 body, a plain-text DMR error, curl's complaint
    done: bool = False

    def feed_line(self, line: str) -> str:
        """Take one line; returns the text delta it carried ('' if none)."""
        line = line.rstrip("\r")
        if not line.strip():
            return ""
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload == "[DONE]":
                self.done = True
                return ""
            try:
                data = json.loads(payload)
            except ValueError:
                self.other.append(line)
                return ""
            if data.get("usage"):
                self.usage = data["usage"]
            delta = ((data.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
            if delta:
                self.chunks += 1
                self.content += delta
            return delta
        if line.strip().isdigit() and len(line.strip()) == 3:
            self.status = int(line.strip())  # curl's -w '%{http_code}', the last line
            return ""
        self.other.append(line)
        return ""


def parse_sse(text: str) -> SseReply:
    """Parse a whole `curl -sN … -w '\\n%{http_code}\\n'` output (the authoritative reading)."""
    reply = SseReply()
    for line in text.split("\n"):
        reply.feed_line(line)
    return reply


class LineSink(io.TextIOBase):
    """A text stream for ``runner.run(out=…)`` that hands each complete output line to a callback.

    The runner writes its ``$ command`` header first: that line is skipped.
    """

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.pending = ""
        self.header = True

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if self.header:
                self.header = False
                continue
            self.on_line(line)
        return len(text)

    def flush(self) -> None:
        pass
