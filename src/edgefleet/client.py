"""The one client of the fleet server's user API (httpx): the `edgefleet` CLI and `preload
release` use it."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def config_path() -> Path:
    """Where `edgefleet login` keeps the login (env EDGEFLEET_CLIENT_CONFIG overrides)."""
    return Path(os.environ.get("EDGEFLEET_CLIENT_CONFIG",
                               Path.home() / ".config" / "edgefleet" / "client.json"))

SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}


class ApiError(Exception):
    """The server refused a request; `str()` is its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Login:
    """Where the server is and the token to use (saved by `edgefleet login`)."""

    url: str
    token: str


def load_login(*, path: Path | None = None) -> Login | None:
    """The saved login; EDGEFLEET_SERVER / EDGEFLEET_TOKEN override it."""
    path = path or config_path()
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text())
    url = os.environ.get("EDGEFLEET_SERVER") or data.get("url")
    token = os.environ.get("EDGEFLEET_TOKEN") or data.get("token")
    return Login(url=str(url), token=str(token)) if url and token else None


def save_login(login: Login, *, path: Path | None = None) -> None:
    """Save the login readable by its owner only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there before
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": login.url, "token": login.token}, fh)


def project_tar(root: Path) -> bytes:
    """The project directory as a gzipped tar (VCS and cache directories left out)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                full = Path(dirpath) / name
                tar.add(full, arcname=str(full.relative_to(root)), recursive=False)
    return buf.getvalue()


def _error(r: httpx.Response) -> ApiError:
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    if isinstance(detail, list):  # validation errors
        detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}"
                           for d in detail)
    return ApiError(r.status_code, f"{r.status_code}: {detail}")


class FleetClient:
    """Typed calls of the user API; every method raises ApiError on a refusal."""

    def __init__(self, *, login: Login, timeout: float = 30.0) -> None:
        self.login = login
        self.http = httpx.Client(base_url=login.url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {login.token}"})

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise _error(r)
        return r.json() if r.content else None

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """Any user-API call (`/api/v1/...`): its JSON reply, or ApiError."""
        return self._call(method, path, **kw)

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/v1/whoami"))

    def create_user(self, *, username: str, is_admin: bool = False) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/users",
                               json={"username": username, "is_admin": is_admin}))

    def set_password(self, *, username: str, password: str) -> None:
        self._call("PUT", f"/api/v1/users/{username}/password", json={"password": password})

    def fleets(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/fleets"))

    def fleet(self, *, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/fleets/{name}"))

    def create_fleet(self, *, name: str, device_type: str,
                     organization: str | None = None) -> dict[str, Any]:
        body = {"name": name, "device_type": device_type}
        if organization:
            body["organization"] = organization
        return dict(self._call("POST", "/api/v1/fleets", json=body))

    def set_fleet_release(self, *, name: str, release: str) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/api/v1/fleets/{name}",
                               json={"target_release": release}))

    def provisioning_config(self, *, fleet: str, poll_interval_ms: int) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/v1/fleets/{fleet}/config",
                               json={"poll_interval_ms": poll_interval_ms}))

    def devices(self, *, fleet: str | None = None) -> list[dict[str, Any]]:
        params = {"fleet": fleet} if fleet else {}
        return list(self._call("GET", "/api/v1/devices", params=params))

    def device(self, *, device: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/devices/{device}"))

    def update_device(self, *, device: str, **body: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/api/v1/devices/{device}", json=body))

    def delete_device(self, *, device: str) -> None:
        self._call("DELETE", f"/api/v1/devices/{device}")

    def releases(self, *, fleet: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/v1/fleets/{fleet}/releases"))

    def release(self, *, commit: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/releases/{commit}"))

    def variables(self, *, fleet: str | None, device: str | None,
                  kind: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("fleet", fleet), ("device", device), ("kind", kind)) if v}
        return list(self._call("GET", "/api/v1/variables", params=params))

    def set_variable(self, **body: Any) -> dict[str, Any]:
        return dict(self._call("PUT", "/api/v1/variables",
                               json={k: v for k, v in body.items() if v is not None}))

    def delete_variable(self, **params: Any) -> None:
        self._call("DELETE", "/api/v1/variables",
                   params={k: v for k, v in params.items() if v is not None})

    def logs(self, *, device: str, count: int, service: str | None,
             follow: bool) -> Iterator[dict[str, Any]]:
        """A device's log lines; with follow, new lines as they come (until interrupted)."""
        uuid = self.device(device=device)["uuid"]
        params: dict[str, Any] = {"count": count, "stream": int(follow)}
        if service:
            params["service"] = service
        if not follow:
            yield from self._call("GET", f"/device/v2/{uuid}/logs", params=params)
            return
        yield from self._ndjson("GET", f"/device/v2/{uuid}/logs", params=params,
                                timeout=httpx.Timeout(30.0, read=None))

    def push(self, *, fleet: str, source: Path) -> Iterator[dict[str, Any]]:
        """Upload a project and yield the build's events, ending with `type: done`."""
        yield from self._ndjson("POST", f"/api/v1/fleets/{fleet}/releases",
                                content=project_tar(source),
                                headers={"Content-Type": "application/x-tar"},
                                timeout=httpx.Timeout(60.0, read=None))

    def _ndjson(self, method: str, path: str, **kw: Any) -> Iterator[dict[str, Any]]:
        """A streamed answer of JSON lines, one event a line."""
        with self.http.stream(method, path, **kw) as r:
            if r.status_code >= 400:
                r.read()
                raise _error(r)
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def remote(self, method: str, path: str, **kw: Any) -> Any:
        """A call of the remote-access API (`/api/v1/...`: actions, diagnostics, audit)."""
        return self._call(method, f"/api/v1{path}", timeout=kw.pop("timeout", 120.0), **kw)
