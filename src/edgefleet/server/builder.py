"""Building a release on the server's Docker engine and pushing its images to the registry
(Engine API over the unix socket with httpx); progress goes out as events."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from edgefleet.engine import dockerhttp
from edgefleet.server.project import BuildSpec, Project, write_context_tar
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


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, 2**20):
        yield chunk


async def build_one(*, client: httpx.AsyncClient, spec: BuildSpec, target: BuildTarget,
                    substitutions: dict[str, str], emit: Emit, scratch: Path | None = None
                    ) -> str:
    """Build one service image, tagged for the registry; returns `repo:commit`. The context
    goes to the engine from a temporary file (in `scratch`), never whole in memory."""
    with tempfile.TemporaryFile(dir=scratch) as file:
        dockerfile = await asyncio.to_thread(write_context_tar, spec=spec,
                                             substitutions=substitutions, out=file)
        file.seek(0)
        return await _build(client=client, spec=spec, target=target, emit=emit,
                            body=_chunks(file), dockerfile=dockerfile)


async def _build(*, client: httpx.AsyncClient, spec: BuildSpec, target: BuildTarget,
                 emit: Emit, body: AsyncIterator[bytes], dockerfile: str) -> str:
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


_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from")


async def _layer_event(*, msg: dict[str, Any], service: str, sizes: dict[str, int],
                       emit: Emit) -> None:
    """A `push` event per layer: bytes while pushing (`current` never above `total`), then
    the layer's end (`status` Pushed / Layer already exists / Mounted from ...)."""
    layer, status = str(msg.get("id") or ""), str(msg.get("status") or "")
    detail = msg.get("progressDetail") or {}
    if not layer:
        return
    if status == "Pushing" and detail.get("total"):
        total = int(detail["total"])
        sizes[layer] = total
        await emit({"type": "push", "service": service, "layer": layer, "status": status,
                    "current": min(int(detail.get("current") or 0), total), "total": total})
    elif status.startswith(_LAYER_DONE):
        total = sizes.get(layer, 0)
        await emit({"type": "push", "service": service, "layer": layer, "status": status,
                    "current": total, "total": total})


async def push_one(*, client: httpx.AsyncClient, service: str, ref: str, emit: Emit
                   ) -> PushedImage:
    """Push `repo:tag` to its registry; the device will pull it by digest."""
    repo, tag = ref.rsplit(":", 1)
    digest, size = "", 0
    sizes: dict[str, int] = {}
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
            await _layer_event(msg=msg, service=service, sizes=sizes, emit=emit)
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
                                  substitutions=substitutions, emit=emit,
                                  scratch=project.scratch)
            await emit({"type": "status", "service": spec.service,
                        "message": f"pushing {ref}"})
            out.append(await push_one(client=client, service=spec.service, ref=ref, emit=emit))
    out += [PushedImage(service=name, ref=image, digest="")
            for name, image in project.images.items()]
    return out
