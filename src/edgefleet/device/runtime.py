"""Wiring for `edgefleet supervisor run`: config.json, data dir, apps.json first boot, and the
supervisor's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet import __version__
from edgefleet.device.api.context import Diagnostics, HostCommands
from edgefleet.device.datadir import DataDirLock
from edgefleet.device.delta import DeltaEngine, DeltaSettings, delta_enabled
from edgefleet.device.logs import LogSink
from edgefleet.device.pin import remember_pin
from edgefleet.device.store import PERSISTENT_LOG_LIMIT, Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.targets import TargetSource
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.device.update_gate import UpdateGate
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.starts import EngineStartRecorder
from edgefleet.model import formats
from edgefleet.model.config import DeviceConfig, load_config
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.timeutil import backoff_s

if TYPE_CHECKING:
    from fastapi import FastAPI

    from edgefleet.device.api.server import ApiServer
    from edgefleet.device.link import CloudLink

DEFAULT_DATA_DIR = "/var/lib/edgefleet"


@dataclass(frozen=True)
class RunOptions:
    """Everything `supervisor run` was asked to do."""

    config: DeviceConfig
    data_dir: Path
    apps_json: Path | None = None
    engine_socket: str = "/var/run/docker.sock"
    scope: str = "default"
    engine_pidfile: str = "/var/run/docker.pid"
    api_host: str = "0.0.0.0"
    """Where the supervisor API listens (all addresses: loopback, the supervisor0 bridge,
    and the LAN, where `balena push <ip>` reaches it in local mode)."""
    api_port: int | None = None
    """None: config.json's listenPort (48484); 0: an ephemeral port (tests)."""
    bridge_name: str = "supervisor0"
    bridge_subnet: str = "10.114.104.0/25"
    host_commands: HostCommands = field(default_factory=HostCommands)
    diagnostics: Diagnostics | None = None
    on_update_requested: Callable[[], None] | None = None
    """Called by `POST /v1/update` (the cloud link fetches the target at once)."""
    config_path: Path | None = None
    """Where config.json lives (registration writes the device key back to it)."""


def open_store(*, data_dir: Path, persistent_logs: bool = False) -> Store:
    """The store of a supervisor data dir; persistent logging keeps up to 32 MB of log lines
    across restarts, otherwise the newest 10,000 lines of this run are kept."""
    if persistent_logs:
        return Store(path=data_dir / "edgefleet.sqlite", log_limit=PERSISTENT_LOG_LIMIT)
    return Store(path=data_dir / "edgefleet.sqlite")


def device_uuid(*, config: DeviceConfig, store: Store) -> str:
    """config.json's uuid, else one generated once and kept in the store."""
    if config.uuid:
        return config.uuid
    stored = store.get_config(key="uuid")
    if stored:
        return stored
    new = uuidlib.uuid4().hex
    store.set_config(key="uuid", value=new)
    return new


def load_apps_json(*, path: Path, supervisor: Supervisor, store: Store) -> str:
    """First boot (compat §2): load apps.json only when no target was ever set, then rename it
    `apps.json.preloaded` and leave `{}` in its place. Returns what happened."""
    if not path.exists():
        return f"no {path}"
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput("apps.json", [Problem(f"line {exc.lineno}", exc.msg)]) from None
    apps = formats.parse_apps_json(data=data)
    if apps.empty:
        return "apps.json is empty"
    if store.load_target() is not None:
        return "a target is already set; apps.json ignored"
    target = apps.to_target(device_uuid=supervisor.device.uuid)
    supervisor.set_target(target=target, source=TargetSource.APPS_JSON)
    pinned = remember_pin(store=store, target=target) if apps.pin_device else None
    preloaded = path.with_name(path.name + ".preloaded")
    os.replace(path, preloaded)
    path.write_text("{}\n")
    pin = f"; pinDevice: will pin to release {pinned.commit} once in a fleet" if pinned else ""
    return f"loaded {path} (renamed to {preloaded.name}){pin}"


async def _bridge_gateway(*, engine: DockerEngine, options: RunOptions,
                          logs: LogSink) -> str:
    from edgefleet.engine.bridge import ensure_bridge
    from edgefleet.engine.errors import EngineError

    try:
        return await ensure_bridge(engine=engine, name=options.bridge_name,
                                   subnet=options.bridge_subnet)
    except EngineError as exc:
        logs.system(f"Could not set up the {options.bridge_name} bridge ({exc}); services"
                    " not on host networking get 127.0.0.1 as the supervisor address",
                    error=True)
        return "127.0.0.1"


API_RETRY_BASE_S = 0.5
API_RETRY_CAP_S = 30.0


def api_retry_delay_s(*, attempt: int, rng: random.Random) -> float:
    """The wait before bind attempt `attempt + 1`: exponential from 0.5 s, capped at 30 s,
    jittered to 50-100% (supervisors restarted together do not retry in step)."""
    return backoff_s(attempt, base_s=API_RETRY_BASE_S, cap_s=API_RETRY_CAP_S) * rng.uniform(
        0.5, 1.0)


async def _serve_api(*, app: FastAPI, host: str, port: int, sock: socket.socket | None,
                     logs: LogSink, gateway: str, started: Callable[[int], None] | None,
                     servers: list[ApiServer]) -> None:
    """Serve the API. While its port is taken, retry with a jittered backoff, saying what
    holds the port (when it changes); the reconcile loop runs meanwhile, without the API."""
    from edgefleet.device.api.port_holder import port_holder
    from edgefleet.device.api.server import ApiServer, bind

    rng = random.Random()
    attempt, said, since = 0, None, time.monotonic()
    while sock is None:
        try:
            sock = bind(host=host, port=port)
        except OSError as exc:
            holder = await asyncio.to_thread(port_holder, port=port)
            delay = api_retry_delay_s(attempt=attempt, rng=rng)
            if holder != said:
                logs.system(f"Supervisor API cannot listen on {host}:{port}"
                            f" ({exc.strerror or exc}; held by {holder or 'an unknown socket'});"
                            " the apps are supervised without it meanwhile. Retrying with"
                            f" backoff (up to {API_RETRY_CAP_S:.0f} s), next in {delay:.1f} s",
                            error=True)
                said = holder
            attempt += 1
            await asyncio.sleep(delay)
    server = ApiServer(app=app, sockets=[sock])
    servers.append(server)
    after = (f" (the port was free after {attempt + 1} attempts,"
             f" {time.monotonic() - since:.1f} s)") if attempt else ""
    logs.system(f"Supervisor API listening on {host}:{server.port}"
                f" (services on bridges reach it at {gateway}:{server.port}){after}")
    if started is not None:
        started(server.port)
    await server.run()


def start_link(*, supervisor: Supervisor, options: RunOptions
               ) -> tuple[CloudLink, asyncio.Task[None]] | None:
    """A managed device (apiEndpoint in config.json) starts its cloud link: register, poll,
    report, stream logs."""
    if not options.config.is_managed:
        return None
    if options.config_path is None:
        raise InvalidInput("config.json", [Problem("apiEndpoint", "a managed device needs the"
                                                   " path of its config.json")])
    from edgefleet.device.link import CloudLink  # unmanaged devices never load httpx

    link = CloudLink(supervisor=supervisor, config=options.config,
                     config_path=options.config_path, data_dir=options.data_dir)
    supervisor.link = link
    return link, asyncio.create_task(link.run())


def delta_settings(*, options: RunOptions, supervisor: Supervisor) -> DeltaSettings | None:
    """Where and how to ask for deltas, when the `delta` config variable is on and the device
    is registered (config.json re-read: the link writes the device key into it)."""
    target = supervisor.target
    if target is None or not delta_enabled(target.device.config) or \
            options.config_path is None:
        return None
    try:
        cfg = load_config(path=options.config_path)
    except InvalidInput:
        return None
    endpoint = cfg.delta_endpoint or cfg.api_endpoint
    if not endpoint or not cfg.device_api_key:
        return None
    return DeltaSettings(endpoint=endpoint.rstrip("/"), api_key=cfg.device_api_key,
                         root_ca=cfg.root_ca)


async def run_supervisor(*, options: RunOptions, echo: bool = True,
                         started: Callable[[int], None] | None = None) -> None:
    """Run a supervisor and its API until SIGINT/SIGTERM; `started(port)` once it listens."""
    from edgefleet.device.api.app import create_app
    from edgefleet.device.api.context import ApiContext
    from edgefleet.device.api.server import bind
    from edgefleet.device.local_mode import LocalMode

    cfg = options.config
    held = DataDirLock(options.data_dir)  # a second supervisor on this data dir stops here
    port = cfg.listen_port if options.api_port is None else options.api_port
    try:
        sock: socket.socket | None = bind(host=options.api_host, port=port)
    except OSError:
        sock = None  # `_serve_api` says why and keeps trying; the supervisor runs meanwhile
    store = open_store(data_dir=options.data_dir,
                       persistent_logs=options.config.persistent_logging)
    if not options.config.persistent_logging:
        store.clear_logs()  # like balena's volatile journal: logs last one run
    logs = LogSink(store=store, echo=echo)
    engine = DeltaEngine(socket=options.engine_socket, scope=options.scope,
                         data_dir=options.data_dir, log=logs)
    gateway = await _bridge_gateway(engine=engine, options=options, logs=logs)
    device = DeviceContext(
        uuid=device_uuid(config=cfg, store=store), device_type=cfg.device_type,
        device_name=cfg.hostname or "", supervisor_version=__version__,
        lock_root=str(options.data_dir / "services"), scope=options.scope,
        supervisor_api_port=int(sock.getsockname()[1]) if sock else port,
        engine_socket=options.engine_socket,
        supervisor_api_host_for_bridge=gateway,
        device_api_key=cfg.device_api_key or "", api_endpoint=cfg.api_endpoint or "",
    )
    gate = UpdateGate(engine=engine, logs=logs, cap_s=cfg.poll_interval_s)
    local = LocalMode(config=cfg, store=store, logs=logs)
    supervisor = Supervisor(engine=engine, store=store, device=device, logs=logs,
                            poll_interval_s=cfg.poll_interval_s,
                            lock_override=cfg.lock_override, gate=gate,
                            cloud_filter=local.admit_cloud_target)
    local.start(supervisor)
    logs.system(f"Supervisor starting (edgefleet {__version__}, device {device.uuid},"
                f" scope {options.scope}, {'managed' if cfg.is_managed else 'unmanaged'})")
    for problem in cfg.ignored:
        logs.system(f"config.json: {problem} (fix the field; the apps keep running"
                    " meanwhile)", error=True)
    for problem in cfg.adjusted:
        logs.system(f"config.json: {problem}")
    engine.settings = lambda: delta_settings(options=options, supervisor=supervisor)
    link = start_link(supervisor=supervisor, options=options)
    on_update = options.on_update_requested or (link[0].poll_now if link is not None else None)
    ctx = ApiContext.of(supervisor, config=cfg, local=local,
                     host=options.host_commands, diagnostics=options.diagnostics,
                     on_update_requested=on_update,
                     api_port=device.supervisor_api_port)
    supervisor.api_keys.global_key()  # generated at first start, kept in the store
    servers: list[ApiServer] = []
    if options.apps_json is not None and not local.enabled:
        logs.system(load_apps_json(path=options.apps_json, supervisor=supervisor, store=store))
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    from edgefleet.device.runfile import RunningSupervisor, remove_runfile, write_runfile

    write_runfile(info=RunningSupervisor(
        pid=os.getpid(), data_dir=str(options.data_dir.resolve()), scope=options.scope,
        engine_socket=options.engine_socket, api_port=device.supervisor_api_port,
        config=str(options.config_path.resolve()) if options.config_path else ""))
    recorder = asyncio.create_task(EngineStartRecorder(
        pidfile=options.engine_pidfile, record=options.data_dir / "engine-starts.jsonl").run())
    api = asyncio.create_task(_serve_api(
        app=create_app(ctx=ctx), host=options.api_host, port=port, sock=sock, logs=logs,
        gateway=gateway, started=started, servers=servers))
    try:
        await supervisor.run()
    except asyncio.CancelledError:
        logs.system("Supervisor stopping")
    finally:
        if link is not None:
            await link[0].shutdown()
            await cancel_and_wait(link[1])
        from edgefleet.device.api.local import end_log_streams

        end_log_streams(logs)
        for server in servers:
            server.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(api), timeout=5)
        await cancel_and_wait(recorder, api)
        remove_runfile(pid=os.getpid())
        logs.flush()
        await gate.close()
        await engine.close()
        store.close()
        held.close()
