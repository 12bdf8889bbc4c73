"""HTTP/1.1 over a tunnel stream (h11): how the server calls a device's supervisor API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h11

from edgefleet.tunnel.stream import Stream

MAX_BODY = 16 * 1024 * 1024


class DeviceHttpError(Exception):
    """The supervisor API could not be reached or answered nonsense."""


@dataclass(frozen=True)
class DeviceReply:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", "replace")


async def request(stream: Stream, *, method: str, path: str, api_key: str,
                  body: dict[str, Any] | None = None) -> DeviceReply:
    """One request on a fresh stream to the supervisor API's port; the stream ends with it."""
    conn = h11.Connection(our_role=h11.CLIENT)
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [("Host", "supervisor"), ("Authorization", f"Bearer {api_key}"),
               ("Connection", "close"), ("Content-Length", str(len(payload)))]
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    out = conn.send(h11.Request(method=method, target=path, headers=headers)) or b""
    out += conn.send(h11.Data(data=payload)) or b"" if payload else b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.write(out)
    status = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.read()
            conn.receive_data(bytes(chunk.data) if chunk.kind == "data" else b"")
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise DeviceHttpError(f"the answer to {path} is larger than {MAX_BODY} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    await stream.write_eof()
    return DeviceReply(status=status, body=b"".join(chunks))
