"""Wiring for `edgefleet supervisor run`: config.json, data dir, apps.json first boot, and the
supervisor's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet import __version__
from edgefleet.device.logs import LogSink
from edgefleet.device.store import PERSISTENT_LOG_LIMIT, Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.starts import EngineStartRecorder
from edgefleet.model import formats
from edgefleet.model.config import DeviceConfig
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput, Problem

if TYPE_CHECKING:
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
    supervisor.set_target(target=target, source="apps.json")
    if apps.pin_device:
        store.set_config(key="pinDevice", value="true")
    preloaded = path.with_name(path.name + ".preloaded")
    os.replace(path, preloaded)
    path.write_text("{}\n")
    return f"loaded {path} (renamed to {preloaded.name})"


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


async def run_supervisor(*, options: RunOptions, echo: bool = True) -> None:
    """Run a supervisor until SIGINT/SIGTERM."""
    store = open_store(data_dir=options.data_dir,
                       persistent_logs=options.config.persistent_logging)
    if not options.config.persistent_logging:
        store.clear_logs()  # like balena's volatile journal: logs last one run
    logs = LogSink(store=store, echo=echo)
    cfg = options.config
    device = DeviceContext(
        uuid=device_uuid(config=cfg, store=store), device_type=cfg.device_type,
        device_name=cfg.hostname or "", supervisor_version=__version__,
        lock_root=str(options.data_dir / "services"), scope=options.scope,
        supervisor_api_port=cfg.listen_port, engine_socket=options.engine_socket,
    )
    engine = DockerEngine(socket=options.engine_socket, scope=options.scope)
    supervisor = Supervisor(engine=engine, store=store, device=device, logs=logs,
                            poll_interval_s=cfg.poll_interval_s,
                            lock_override=cfg.lock_override)
    logs.system(f"Supervisor starting (edgefleet {__version__}, device {device.uuid},"
                f" scope {options.scope}, {'managed' if cfg.is_managed else 'unmanaged'})")
    if options.apps_json is not None:
        logs.system(load_apps_json(path=options.apps_json, supervisor=supervisor, store=store))
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    recorder = asyncio.create_task(EngineStartRecorder(
        pidfile=options.engine_pidfile, record=options.data_dir / "engine-starts.jsonl").run())
    link = start_link(supervisor=supervisor, options=options)
    try:
        await supervisor.run()
    except asyncio.CancelledError:
        logs.system("Supervisor stopping")
    finally:
        recorder.cancel()
        if link is not None:
            await link[0].shutdown()
            link[1].cancel()
            with contextlib.suppress(BaseException):
                await link[1]
        logs.flush()
        await engine.close()
        store.close()
