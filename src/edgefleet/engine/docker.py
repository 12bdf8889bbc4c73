"""The Docker Engine API adapter (httpx over the unix socket): the only code that calls
the engine. Works with dockerd, balenaEngine and podman's Docker-compatible socket."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from edgefleet.engine import answers, dockerhttp, translate
from edgefleet.engine.dockerhttp import ByteReader, Transport
from edgefleet.engine.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NotFound,
    PullFailed,
    StaleTask,
)
from edgefleet.model import naming
from edgefleet.model.engine_events import EngineEvent, LogLine, PullProgress
from edgefleet.model.engine_state import (
    ContainerState,
    EngineState,
)
from edgefleet.model.service import NetworkAttachment, NetworkSpec, ServiceSpec, VolumeSpec

_EXIT = re.compile(r"Exited \((-?\d+)\)")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


class DockerEngine:
    """An `Engine` over the Docker API, limited to objects labelled with this `scope`."""

    def __init__(self, *, socket: str = "/var/run/docker.sock", scope: str) -> None:
        self.socket = socket
        self.scope = scope
        self._http: httpx.AsyncClient | None = None
        self._inspect: dict[str, tuple[str, dict[str, Any]]] = {}
        self._events_live = False
        self._lists: dict[str, tuple[Any, ...]] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client on the engine's socket (made on first use)."""
        if self._http is None:
            self._http = dockerhttp.client(self.socket)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _json(self, obj: str, path: str, method: str = "GET", **kw: Any) -> Any:
        return await dockerhttp.json_call(self.http, obj, method, path, **kw)

    async def _call(self, obj: str, path: str, method: str = "POST", **kw: Any) -> None:
        await dockerhttp.json_call(self.http, obj, method, path, **kw)

    def _filters(self, *labels: str) -> dict[str, str]:
        wanted = [naming.SUPERVISED, f"{naming.SCOPE}={self.scope}", *labels]
        return {"filters": json.dumps({"label": wanted})}

    async def ping(self) -> bool:
        """True when the engine answers."""
        try:
            answer = await dockerhttp.json_call(self.http, "engine", "GET", "_ping",
                                                versioned=False)
        except EngineError:
            return False
        return bool(answer == "OK")

    # --- observe --------------------------------------------------------------------------
    async def observe(self) -> EngineState:
        """Every supervised object of this scope, plus all images and network names."""
        containers_raw, images, networks, volumes = await asyncio.gather(
            self._json("containers", "containers/json", params={"all": "1", **self._filters()}),
            self._listed("images", "images/json", answers.images),
            self._listed("networks", "networks", answers.networks),
            self._listed("volumes", "volumes", answers.volumes, params=self._filters()),
        )
        containers = await asyncio.gather(*(self._container(c) for c in containers_raw))
        live = {c["Id"] for c in containers_raw}
        for cid in list(self._inspect):
            if cid not in live:
                del self._inspect[cid]
        return EngineState(containers=tuple(c for c in containers if c is not None),
                           images=images, networks=networks, volumes=volumes)

    async def _listed(self, kind: str, path: str, parse: Callable[[Any], tuple[Any, ...]],
                      **kw: Any) -> tuple[Any, ...]:
        """Image, network and volume lists, parsed once and reused while the event stream
        (which reports every change to them) is open: a no-op pass on a device holding
        hundreds of images then costs one container list."""
        if self._events_live and kind in self._lists:
            cached: tuple[Any, ...] = self._lists[kind]
            return cached
        result = parse(await self._json(kind, path, **kw))
        if self._events_live:
            self._lists[kind] = result
        return result

    async def _container(self, c: dict[str, Any]) -> ContainerState | None:
        status_text = str(c.get("Status", ""))
        key = f"{c.get('State')}|{_HEALTH.findall(status_text)}|{_EXIT.findall(status_text)}"
        # Inspect results are reused only while an event stream is open: its container events
        # invalidate them (a restart changes RestartCount/StartedAt but not the list entry).
        cached = self._inspect.get(c["Id"]) if self._events_live else None
        if cached is None or cached[0] != key:
            try:
                data = await self._json(c["Id"], f"containers/{c['Id']}/json")
            except NotFound:
                return None
            self._inspect[c["Id"]] = (key, data)
        else:
            data = cached[1]
        state = data.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        return ContainerState(
            id=data["Id"],
            name=(c.get("Names") or [data["Name"]])[0].lstrip("/"),
            image=data["Config"]["Image"],
            image_id=data["Image"],
            labels=data["Config"].get("Labels") or {},
            status=state.get("Status", "created"),
            exit_code=state.get("ExitCode") if state.get("Status") in ("exited", "dead")
            else None,
            restart_count=int(data.get("RestartCount") or 0),
            started_at=state.get("StartedAt"),
            finished_at=state.get("FinishedAt"),
            health=health if health in ("starting", "healthy", "unhealthy") else None,
            networks=tuple(sorted((data.get("NetworkSettings") or {}).get("Networks") or {})),
            stop_timeout_s=data["Config"].get("StopTimeout"),
        )

    def forget(self, ref: str) -> None:
        """Drop cached inspect data of a container (by id, or all when given a name)."""
        if self._inspect.pop(ref, None) is None:
            self._inspect.clear()

    # --- images ---------------------------------------------------------------------------
    async def pull(
        self,
        image: str,
        *,
        auth: dict[str, str] | None = None,
        progress: Callable[[PullProgress], None] | None = None,
    ) -> str:
        """Pull an image (no client timeout), reporting byte progress; returns its id."""
        name, tag = answers.split_ref(image)
        params = {"fromImage": name, "tag": tag}
        headers = {}
        if auth:
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(
                json.dumps(auth).encode()).decode()
        layers: dict[str, tuple[int, int]] = {}
        try:
            async with dockerhttp.stream(self.http, f"image {image}", "POST", "images/create",
                                         params=params, headers=headers) as resp:
                async for line in resp.aiter_lines():
                    if line.strip():
                        self._pull_line(image, json.loads(line), layers, progress)
        except (EngineUnavailable, PullFailed):
            raise
        except EngineError as exc:
            raise PullFailed(image, str(exc).removeprefix(f"image {image}: ")) from None
        except Transport as exc:
            raise PullFailed(image, f"connection to the engine broke: {exc!r}") from None
        self._lists.pop("images", None)
        info = await self._json(f"image {image}", f"images/{image}/json")
        return str(info["Id"])

    @staticmethod
    def _pull_line(image: str, msg: dict[str, Any], layers: dict[str, tuple[int, int]],
                   progress: Callable[[PullProgress], None] | None) -> None:
        if "error" in msg:
            raise PullFailed(image, str(msg.get("error")))
        layer = msg.get("id")
        detail = msg.get("progressDetail") or {}
        status = msg.get("status", "")
        if layer and detail.get("total") and status == "Downloading":
            layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer and status in ("Download complete", "Pull complete", "Already exists"):
            done = layers.get(layer, (0, 0))[1]
            layers[layer] = (done, done)
        note = status if status.startswith("Retrying") else ""
        if progress is not None and layer:
            total = sum(t for _, t in layers.values())
            progress(PullProgress(image=image, downloaded=sum(c for c, _ in layers.values()),
                                  total=total, note=note))

    async def remove_image(self, image_id: str) -> None:
        self._lists.pop("images", None)
        await self._call(f"image {image_id}", f"images/{image_id}", "DELETE")

    async def image_inspect(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(f"image {ref}", f"images/{ref}/json")
        return result

    async def info(self) -> dict[str, Any]:
        """The engine's /info (DockerRootDir, Architecture, RegistryConfig, ...)."""
        result: dict[str, Any] = await self._json("engine", "info")
        return result

    async def api(self, obj: str, path: str, method: str = "GET", **kw: Any) -> Any:
        """Any other Engine API call returning JSON (errors typed like the rest)."""
        return await self._json(obj, path, method, **kw)

    async def raw_list(self, kind: str) -> list[dict[str, Any]]:
        """Every container (`containers`, stopped too) or image (`images`) on the engine,
        whoever made it, as the list endpoint returns them."""
        params = {"all": "1"} if kind == "containers" else {}
        return list(await self._json(kind, f"{kind}/json", params=params))

    # --- containers -----------------------------------------------------------------------
    async def create_container(self, spec: ServiceSpec, *,
                               network_from: str | None = None) -> str:
        """Create the container for a service, attached to its first network (connect the
        others with `connect_network`); returns its id. `network_from`: the container whose
        network stack a `network_mode: service:x` service joins."""
        name = spec.container_name
        ids: dict[str, str] = {}
        if network_from is not None and spec.network_mode.startswith("service:"):
            ids[spec.network_mode[len("service:"):]] = network_from  # the plan's edge
        pid = spec.pid or ""
        if pid.startswith("service:") and pid[len("service:"):] not in ids:
            target = pid[len("service:"):]  # pid: service:<name> joins its container's pids
            found = await self._json("containers", "containers/json", params={
                "all": "1", **self._filters(f"{naming.APP_UUID}={spec.app_uuid}",
                                            f"{naming.SERVICE_NAME}={target}")})
            if not found:
                raise NotFound(f"service {spec.service_name}", f"{pid}: no container for {target}")
            ids[target] = str(found[0]["Id"])
        resolve = ids.__getitem__ if ids else None
        body = translate.create_body(spec=spec, resolve_service_container=resolve)
        data = await self._json(f"container {name}", "containers/create", "POST",
                                params={"name": name}, data=body)
        return str(data["Id"])

    async def connect_network(self, network: str, *, container: str,
                              attachment: NetworkAttachment) -> None:
        """Attach a container to one more network."""
        self.forget(container)
        await self._call(f"network {network}", f"networks/{network}/connect",
                         data=json.dumps({"Container": container,
                                          "EndpointConfig": translate.endpoint(attachment)}))

    async def start_container(self, ref: str) -> None:
        """Start; raises StaleTask when the engine's leftover task makes every start fail."""
        self.forget(ref)
        try:
            await self._call(f"container {ref}", f"containers/{ref}/start")
        except EngineError as exc:
            raise StaleTask.recognise(exc) from None

    async def stop_container(self, ref: str, *, timeout_s: float) -> None:
        self.forget(ref)
        await self._call(f"container {ref}", f"containers/{ref}/stop",
                         params={"t": str(int(timeout_s))})

    async def restart_container(self, ref: str, *, timeout_s: float) -> None:
        self.forget(ref)
        try:
            await self._call(f"container {ref}", f"containers/{ref}/restart",
                             params={"t": str(int(timeout_s))})
        except EngineError as exc:
            raise StaleTask.recognise(exc) from None

    async def kill_container(self, ref: str, *, signal: str = "SIGKILL") -> None:
        await self._call(f"container {ref}", f"containers/{ref}/kill", params={"signal": signal})

    async def remove_container(self, ref: str, *, force: bool = False) -> None:
        await self._call(f"container {ref}", f"containers/{ref}", "DELETE",
                         params={"force": "1" if force else "0", "v": "0"})

    async def rename_container(self, ref: str, *, new_name: str) -> None:
        self.forget(ref)
        await self._call(f"container {ref}", f"containers/{ref}/rename",
                         params={"name": new_name})

    async def inspect_container(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(f"container {ref}", f"containers/{ref}/json")
        return result

    # --- networks and volumes ------------------------------------------------------------
    async def create_network(self, spec: NetworkSpec) -> None:
        self._lists.pop("networks", None)
        await self._json(f"network {spec.engine_name}", "networks/create", "POST",
                         data=translate.network_body(spec=spec, scope=self.scope))

    async def remove_network(self, name: str) -> None:
        self._lists.pop("networks", None)
        await self._call(f"network {name}", f"networks/{name}", "DELETE")

    async def create_volume(self, spec: VolumeSpec) -> None:
        """Create the volume. The engine answers a create for an existing name with that
        volume, unchanged: when it is not this supervisor's, say so instead of looping on a
        create that never shows up in `observe`, and leave its data alone."""
        self._lists.pop("volumes", None)
        obj = f"volume {spec.engine_name}"
        made = await self._json(obj, "volumes/create", "POST",
                                data=translate.volume_body(spec=spec, scope=self.scope))
        labels = (made or {}).get("Labels") or {}
        if naming.SUPERVISED not in labels or labels.get(naming.SCOPE) != self.scope:
            owner = (f"supervisor scope {labels[naming.SCOPE]!r}" if naming.SCOPE in labels
                     else "no edgefleet supervisor")
            raise Conflict(obj, f"a volume with this name already exists and belongs to "
                                f"{owner}; its data is left untouched. Copy out what you need "
                                f"and remove it (docker volume rm {spec.engine_name}), or give "
                                f"the release's volume another name")

    async def remove_volume(self, name: str) -> None:
        self._lists.pop("volumes", None)
        await self._call(f"volume {name}", f"volumes/{name}", "DELETE")

    # --- events and logs -----------------------------------------------------------------
    async def events(self) -> AsyncIterator[EngineEvent]:
        """Engine events for this scope's containers, and image/network/volume events."""
        filters = json.dumps({"type": ["container", "image", "network", "volume"]})
        try:
            async with dockerhttp.stream(self.http, "events", "GET", "events",
                                         params={"filters": filters}) as resp:
                self._events_live = True
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    actor = ev.get("Actor") or {}
                    attrs = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
                    kind = str(ev.get("Type"))
                    if kind in ("image", "network", "volume"):
                        self._lists.pop(f"{kind}s", None)
                    if kind == "container":
                        if attrs.get(naming.SCOPE) != self.scope:
                            continue
                        self.forget(str(actor.get("ID", "")))
                    yield EngineEvent(type=str(ev.get("Type")), action=str(ev.get("Action")),
                                      id=str(actor.get("ID", "")), attributes=attrs,
                                      time_nano=int(ev.get("timeNano") or 0))
        except Transport as exc:
            raise EngineUnavailable("events", f"event stream broke: {exc!r}") from None
        finally:
            self._events_live = False
            self._inspect.clear()
            self._lists.clear()

    async def logs(self, ref: str, *, follow: bool, since_s: float = 0) -> AsyncIterator[LogLine]:
        """A container's stdout/stderr lines with their timestamps (a tty container's are all
        stdout)."""
        params = {"stdout": "1", "stderr": "1", "timestamps": "1",
                  "follow": "1" if follow else "0", "since": str(int(since_s))}
        try:
            async with dockerhttp.stream(self.http, f"container {ref}", "GET",
                                         f"containers/{ref}/logs", params=params) as resp:
                kind = resp.headers.get("Content-Type", "")
                reader = ByteReader(resp.aiter_raw())
                if not kind:  # Docker 20.10 names neither: a frame header starts 0|1|2,0,0,0
                    head = await reader.peek(4)
                    kind = "multiplexed" if head[:1] in (b"\0", b"\1", b"\2") and \
                        head[1:4] == b"\0\0\0" else "application/vnd.docker.raw-stream"
                tty = kind == "application/vnd.docker.raw-stream"
                while True:
                    if tty:
                        raw = await reader.line()
                        if not raw:
                            return
                        yield answers.log_line(ref, raw, False)
                        continue
                    header = await reader.exactly(8)
                    if header is None:
                        return
                    stream, size = struct.unpack(">BxxxL", header)
                    payload = await reader.exactly(size)
                    if payload is None:
                        return
                    for raw in payload.splitlines():
                        yield answers.log_line(ref, raw, stream == 2)
        except Transport as exc:
            raise EngineUnavailable(f"container {ref}", f"log stream broke: {exc!r}") from None
