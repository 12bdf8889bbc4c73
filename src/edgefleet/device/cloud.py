"""The device's HTTP client for the fleet server's device API (compat §2-4): register, target
state with ETag, state reports and log lines. Only this module speaks HTTP to the cloud."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

TIMEOUT_S = 30.0


class CloudError(Exception):
    """A request to the fleet server failed; `status` is 0 when no answer came at all."""

    def __init__(self, message: str, *, status: int = 0, retry_after_s: float | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class RegistrationRefused(CloudError):
    """The server refused to register this device (bad provisioning key, unknown fleet, ...)."""


class PinRefused(CloudError):
    """The server will never pin this device to that release (not in its fleet, or not a
    successful release): 400/404/409/422 on PATCH /device/v3/:uuid."""


class DuplicateDevice(CloudError):
    """POST /device/register answered 409: a device with this uuid exists already."""


@dataclass(frozen=True)
class Registered:
    """What the server said when it registered this device."""

    id: int | None
    uuid: str
    api_key: str


@dataclass(frozen=True)
class TargetFetch:
    """A state GET: `document` is None when the server answered 304 Not Modified."""

    document: dict[str, Any] | None
    etag: str | None


def retry_after(*, value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error(what: str, response: httpx.Response) -> CloudError:
    body = response.text.strip()
    try:
        detail = json.loads(body).get("detail", body) if body else ""
    except (ValueError, AttributeError):
        detail = body
    return CloudError(f"{what}: HTTP {response.status_code} {str(detail)[:300]}".rstrip(),
                      status=response.status_code,
                      retry_after_s=retry_after(value=response.headers.get("Retry-After")))


class CloudClient:
    """One device's connection to its fleet server (`apiEndpoint` of config.json)."""

    def __init__(self, *, endpoint: str, transport: httpx.AsyncBaseTransport | None = None,
                 timeout_s: float = TIMEOUT_S, tls: ssl.SSLContext | None = None) -> None:
        """`tls`: whom to trust for an https endpoint (`device/trust.py`; default: the
        standard CA bundle)."""
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.endpoint, transport=transport,
                                       timeout=httpx.Timeout(timeout_s, connect=10.0),
                                       verify=tls if tls is not None else True)

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise CloudError(f"{what}: {self.endpoint} did not answer"
                             f" ({type(exc).__name__}: {exc})") from None

    async def register(self, *, provisioning_key: str, body: dict[str, Any]) -> Registered:
        """POST /device/register with the fleet's provisioning key."""
        what = "registering the device"
        r = await self._send(what, "POST", "/device/register", json=body,
                             headers={"Authorization": f"Bearer {provisioning_key}"})
        if r.status_code == 409:
            raise DuplicateDevice(f"{what}: uuid {body.get('uuid')} is registered already",
                                  status=409)
        if r.status_code in (400, 401, 403, 404, 422):
            err = _error(what, r)
            raise RegistrationRefused(str(err), status=r.status_code)
        if r.status_code >= 300:
            raise _error(what, r)
        data = r.json()
        return Registered(id=data.get("id"), uuid=str(data.get("uuid", body.get("uuid"))),
                          api_key=str(data.get("api_key") or body.get("api_key") or ""))

    async def get_target(self, *, uuid: str, api_key: str, etag: str | None) -> TargetFetch:
        """GET /device/v3/:uuid/state; 304 (nothing new) gives `document=None`."""
        headers = {"Authorization": f"Bearer {api_key}"}
        if etag:
            headers["If-None-Match"] = etag
        r = await self._send("fetching the target state", "GET", f"/device/v3/{uuid}/state",
                             headers=headers)
        if r.status_code == 304:
            return TargetFetch(document=None, etag=r.headers.get("ETag") or etag)
        if r.status_code != 200:
            raise _error("fetching the target state", r)
        try:
            document = r.json()
        except ValueError:
            raise CloudError("fetching the target state: the answer is not JSON",
                             status=r.status_code) from None
        return TargetFetch(document=document, etag=r.headers.get("ETag"))

    async def pin_release(self, *, uuid: str, api_key: str, commit: str) -> None:
        """PATCH /device/v3/:uuid `{pinned_release}`: pin this device to one of its fleet's
        releases (the preloaded one). PinRefused when the server says it never will."""
        what = f"pinning the device to release {commit}"
        r = await self._send(what, "PATCH", f"/device/v3/{uuid}",
                             json={"pinned_release": commit},
                             headers={"Authorization": f"Bearer {api_key}"})
        if r.status_code in (400, 404, 409, 422):
            err = _error(what, r)
            raise PinRefused(str(err), status=r.status_code)
        if r.status_code >= 300:
            raise _error(what, r)

    async def patch_state(self, *, api_key: str, report: dict[str, Any]) -> None:
        """PATCH /device/v3/state with (the changed part of) the current state."""
        r = await self._send("reporting the device state", "PATCH", "/device/v3/state",
                             json=report, headers={"Authorization": f"Bearer {api_key}"})
        if r.status_code >= 300:
            raise _error("reporting the device state", r)

    async def stream_logs(self, *, uuid: str, api_key: str,
                          body: AsyncIterator[bytes]) -> None:
        """POST /device/v2/:uuid/log-stream: a chunked NDJSON upload that lasts as long as
        `body` yields; returns when the server answered 2xx."""
        r = await self._send("streaming logs", "POST", f"/device/v2/{uuid}/log-stream",
                             content=body,
                             headers={"Authorization": f"Bearer {api_key}",
                                      "Content-Type": "application/x-ndjson"})
        if r.status_code >= 300:
            raise _error("streaming logs", r)
