"""Chat completion chunks → Responses API stream events, as DMR's ``StreamingResponseWriter`` (streaming.go).

A pure state machine (chunks in, ``(event type, payload)`` out) so the event order, the
``sequence_number``s and the tool-call handling are unit-tested on synthetic chunks. Every
payload is a snapshot: later events do not change earlier ones.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .httpio import go_json
from .responses_translate import call_item, message_item, new_id, public, text_part, usage

Event = tuple[str, dict[str, Any]]
_EVENT_FIELDS = ("response", "item", "output_index", "content_index", "part", "delta", "item_id", "error")


def sse(event: Event) -> bytes:
    """One SSE frame as DMR writes it: ``event:`` line, ``data:`` line (Go's ``json.Marshal``), blank line."""
    kind, payload = event
    return f"event: {kind}\ndata: {go_json(payload).rstrip(chr(10))}\n\n".encode()


class StreamTranslator:
    """The events of one streamed response; ``response`` is the Response dict it fills in."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.seq = 0
        self.message_id = ""
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self._index_to_call: dict[int, int] = {}

    def _event(self, kind: str, **fields: Any) -> Event:
        """A ``StreamEvent``: Go's ``omitempty`` drops 0, "" and null (so ``output_index`` 0 is absent)."""
        self.seq += 1
        payload: dict[str, Any] = {"type": kind, "sequence_number": self.seq}
        for key in _EVENT_FIELDS:
            value = fields.get(key)
            if not (value is None or (isinstance(value, int | str) and not value)):
                payload[key] = copy.deepcopy(public(value) if key == "response" else value)
        return kind, payload

    def start(self) -> list[Event]:
        """``response.created`` then ``response.in_progress`` (DMR sends both when upstream answers 200)."""
        self.response["status"] = "in_progress"
        return [self._event("response.created", response=self.response),
                self._event("response.in_progress", response=self.response)]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """The events for one ``chat.completion.chunk``."""
        self._metadata(chunk)
        choices = chunk.get("choices") or []
        if not choices:
            return []
        delta = choices[0].get("delta") or {}
        if delta.get("tool_calls"):  # as DMR: a chunk with tool calls is only read for them
            return [e for call in delta["tool_calls"] for e in self._tool_call(call)]
        if delta.get("content"):  # reasoning_content is dropped, as DMR does
            return self._content(delta["content"])
        return []

    def _metadata(self, chunk: dict[str, Any]) -> None:
        """Usage and finish reason, wherever they come (``Write``'s metadata envelope).

        Deliberate difference: DMR decodes the chat ``usage`` into its own Responses ``Usage`` struct,
        so ``prompt_tokens``/``completion_tokens`` are lost (0) and only ``total_tokens`` survives;
        here they are mapped to ``input_tokens``/``output_tokens`` as the non-stream answer does.
        """
        if chunk.get("usage") and self.response["usage"] is None:
            self.response["usage"] = usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            reason = choice.get("finish_reason")
            if reason:
                self.response["finish_reason"] = reason
                if reason in ("stop", "tool_calls", "length"):
                    self.response["status"] = "completed"
                if reason == "length" and self.response["incomplete_details"] is None:
                    self.response["incomplete_details"] = {"reason": "max_tokens"}
                if reason == "content_filter":
                    self.response["status"] = "failed"
                    self.response["error"] = self.response["error"] or {"code": "content_filter",
                                                                        "message": "Content filtered"}
                break

    def _content(self, text: str) -> list[Event]:
        events = []
        if not self.message_id:
            self.message_id = new_id("msg_")
            events += [
                self._event("response.output_item.added", item=message_item(self.message_id, "", "in_progress")),
                self._event("response.content_part.added", item_id=self.message_id, part=text_part("")),
            ]
        self.text.append(text)
        return [*events, self._event("response.output_text.delta", item_id=self.message_id, delta=text)]

    def _find_call(self, call: dict[str, Any]) -> int | None:
        """The output slot a tool-call delta continues.

        Deliberate difference: DMR matches deltas by ``id`` only, so a backend that (like llama.cpp
        and OpenAI) sends the id only in a call's first chunk gets one extra nameless item per later
        chunk. Here a delta without an id continues the call with the same ``index``.
        """
        call_id = call.get("id") or ""
        if call_id:
            return next((i for i, c in enumerate(self.calls) if c["call_id"] == call_id), None)
        return self._index_to_call.get(int(call.get("index") or 0))

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        events = []
        fn = call.get("function") or {}
        slot = self._find_call(call)
        if slot is None:
            slot = len(self.calls)
            self.calls.append({"id": new_id("item_"), "call_id": call.get("id") or new_id("call_"),
                               "name": fn.get("name") or "", "arguments": ""})
            self._index_to_call[int(call.get("index") or 0)] = slot
            added = self._call_item(slot, "in_progress")
            events.append(self._event("response.output_item.added", item=added, output_index=slot))
        arguments = fn.get("arguments") or ""
        if arguments:
            self.calls[slot]["arguments"] += arguments
            events.append(self._event("response.function_call_arguments.delta", item_id=self.calls[slot]["id"],
                                      output_index=slot, delta=arguments))
        return events

    def _call_item(self, slot: int, status: str) -> dict[str, Any]:
        c = self.calls[slot]
        return call_item(c["id"], c["call_id"], c["name"], c["arguments"], status)

    def finish(self) -> list[Event]:
        """The closing events (``finalize``): the message's, then each call's, then ``response.completed``.

        As DMR: the message is output 0 and the calls are numbered from 0 among themselves; the
        arguments' ``done`` event carries them in ``delta``; the status ends ``completed``.
        """
        events = []
        if self.message_id:
            text = "".join(self.text)
            events += [
                self._event("response.output_text.done", item_id=self.message_id, part=text_part(text)),
                self._event("response.content_part.done", item_id=self.message_id, part=text_part(text)),
                self._event("response.output_item.done", item=message_item(self.message_id, text, "completed")),
            ]
            self.response["output"].append(message_item(self.message_id, text, "completed"))
            self.response["output_text"] = text
        for slot, c in enumerate(self.calls):
            events.append(self._event("response.function_call_arguments.done", item_id=c["id"], output_index=slot,
                                      delta=c["arguments"]))
            events.append(self._event("response.output_item.done", item=self._call_item(slot, "completed"),
                                      output_index=slot))
            self.response["output"].append(self._call_item(slot, "completed"))
        self.response["status"] = "completed"
        return [*events, self._event("response.completed", response=self.response)]

    def fail(self, message: str, detail: dict[str, Any] | None = None) -> list[Event]:
        """``error`` then ``response.failed``. ``detail`` (our mid-stream addition) also goes in ``response.error``."""
        self.response["status"] = "failed"
        if detail is not None:
            self.response["error"] = detail
        return [self._event("error", error={"code": "upstream_error", "message": message}),
                self._event("response.failed", response=self.response)]


def parse_sse(text: str) -> list[Event]:
    """SSE text back into events (for tests and for re-assembling a stream)."""
    events = []
    for frame in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), json.loads(fields["data"])))
    return events
