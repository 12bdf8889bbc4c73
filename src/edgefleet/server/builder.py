"""Building a release on the server's Docker engine and pushing its images to the registry
(Engine API over the unix socket with httpx); progress goes out as events."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from edgefleet.engine import dockerhttp
from edgefleet.server.project import BuildSpec, Project, context_tar
from edgefleet.server.releases import PushedImage

Emit = Callable[[dict[str, Any]], Awaitable[None]]
NO_AUTH = base64.b64encode(b"{}").decode()


class BuildFailed(Exception):
    """A service's build or push failed; the release becomes `failed`."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


@dataclass(frozen=True)
class BuildTarget:
    """Where images go: `<registry>/<fleet uuid>/<service>:<commit>`."""

    registry: str
    fleet_uuid: str
    commit: str

    def repo(self, service: str) -> str:
        clean = re.sub(r"[^a-z0-9]+", "-", service.lower()).strip("-") or "service"
        return f"{self.registry}/{self.fleet_uuid}/{clean}"


def engine_client(socket_path: str) -> httpx.AsyncClient:
    """The Engine API client over the unix socket (engine.dockerhttp's: no read timeout,
    builds take long)."""
    return dockerhttp.client(socket_path)


async def _lines(response: httpx.Response) -> Any:
    async for line in response.aiter_lines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                yield {"stream": line}


async def build_one(*, client: httpx.AsyncClient, spec: BuildSpec, target: BuildTarget,
                    substitutions: dict[str, str], emit: Emit) -> str:
    """Build one service image, tagged for the registry; returns `repo:commit`."""
    body, dockerfile = context_tar(spec=spec, substitutions=substitutions)
    ref = f"{target.repo(spec.service)}:{target.commit}"
    params = {"t": ref, "dockerfile": dockerfile, "rm": "1", "forcerm": "1",
              "buildargs": json.dumps(spec.args),
              "labels": json.dumps({"io.edgefleet.release": target.commit})}
    async with client.stream("POST", "/build", params=params, content=body,
                             headers={"Content-Type": "application/x-tar"}) as r:
        if r.status_code != 200:
            raise BuildFailed(spec.service, (await r.aread()).decode(errors="replace"))
        async for msg in _lines(r):
            if "error" in msg or "errorDetail" in msg:
                detail = msg.get("error") or msg.get("errorDetail", {}).get("message", "")
                raise BuildFailed(spec.service, str(detail).strip())
            text = msg.get("stream")
            if isinstance(text, str) and text.strip():
                await emit({"type": "build", "service": spec.service,
                            "line": text.rstrip("\n")})
    return ref


async def push_one(*, client: httpx.AsyncClient, service: str, ref: str, emit: Emit
                   ) -> PushedImage:
    """Push `repo:tag` to its registry; the device will pull it by digest."""
    repo, tag = ref.rsplit(":", 1)
    digest, size = "", 0
    async with client.stream("POST", f"/images/{repo}/push", params={"tag": tag},
                             headers={"X-Registry-Auth": NO_AUTH}) as r:
        if r.status_code != 200:
            raise BuildFailed(service, "push: " + (await r.aread()).decode(errors="replace"))
        async for msg in _lines(r):
            if "error" in msg or "errorDetail" in msg:
                raise BuildFailed(service, f"push: {msg.get('error') or msg['errorDetail']}")
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest, size = str(aux["Digest"]), int(aux.get("Size") or 0)
            detail = msg.get("progressDetail") or {}
            if msg.get("status") and detail.get("total"):
                await emit({"type": "push", "service": service, "layer": msg.get("id", ""),
                             "current": detail.get("current", 0), "total": detail["total"]})
    await emit({"type": "pushed", "service": service, "digest": digest})
    return PushedImage(service=service, ref=f"{repo}@{digest}" if digest else ref,
                       digest=digest, size=size)


async def build_project(*, project: Project, target: BuildTarget, engine_socket: str,
                        substitutions: dict[str, str], emit: Emit) -> list[PushedImage]:
    """Build and push every service of a project; services with only `image:` are used as
    they are."""
    out: list[PushedImage] = []
    async with engine_client(engine_socket) as client:
        for spec in project.builds:
            await emit({"type": "status", "service": spec.service,
                        "message": f"building {spec.service}"})
            ref = await build_one(client=client, spec=spec, target=target,
                                  substitutions=substitutions, emit=emit)
            await emit({"type": "status", "service": spec.service,
                        "message": f"pushing {ref}"})
            out.append(await push_one(client=client, service=spec.service, ref=ref, emit=emit))
    out += [PushedImage(service=name, ref=image, digest="")
            for name, image in project.images.items()]
    return out
