"""The cloud link of a managed device: register, then poll the target, report state and
stream logs, each in its own task. `poll_now()` is what POST /v1/update calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from edgefleet.device.cloud import CloudClient, CloudError, PinRefused, RegistrationRefused
from edgefleet.device.logstream import LogStreamer
from edgefleet.device.metrics import Metrics, network_identity, os_version
from edgefleet.device.pin import PIN_KEY, clear_pin, pending_pin
from edgefleet.device.poll import Poller
from edgefleet.device.provision import ensure_registered
from edgefleet.device.report import ReportPolicy, apps_report, device_report
from edgefleet.device.reporter import Reporter
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.supervisor_state import backoff_s
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.device.trust import server_tls
from edgefleet.model.config import DeviceConfig

NETWORK_REFRESH_S = 30.0


class CloudLink:
    """Everything a managed supervisor does with its fleet server."""

    def __init__(self, *, supervisor: Supervisor, config: DeviceConfig, config_path: Path,
                 data_dir: Path, transport: httpx.AsyncBaseTransport | None = None,
                 report_policy: ReportPolicy | None = None) -> None:
        if not config.api_endpoint:
            raise ValueError("a cloud link needs apiEndpoint in config.json")
        self.supervisor = supervisor
        self.config = config
        self.config_path = config_path
        self.tls = server_tls(config)
        self.client = CloudClient(endpoint=config.api_endpoint, transport=transport,
                                  tls=self.tls)
        self.metrics = Metrics(data_dir=data_dir)
        self.report_policy = report_policy or ReportPolicy()
        self.registered = asyncio.Event()
        self.poller: Poller | None = None
        self.reporter: Reporter | None = None
        # Subscribe to the log sink now, so lines from before registration are kept.
        self.streamer = LogStreamer(logs=supervisor.logs, client=self.client,
                                    uuid=supervisor.device.uuid, api_key="",
                                    service_id=self._service_id)
        self._poll_requested = False
        self.tunnel: Any = None
        """The tunnel link once registered (`/v2/device/vpn` reads whether it is up)."""
        self._streamer_task: asyncio.Task[None] | None = None
        self._network: tuple[float, dict[str, str]] = (0.0, {})
        self._os_version = os_version()

    # --- for the supervisor API ------------------------------------------------------------
    def poll_now(self, expect: str | None = None) -> None:
        """Fetch the target state at once (POST /v1/update; the tunnel's "poll now" also
        says which ETag to expect)."""
        if self.poller is not None:
            self.poller.poll_now(expect)
        else:
            self._poll_requested = True

    # --- pieces ----------------------------------------------------------------------------
    def _service_id(self, app_uuid: str, service: str) -> int | None:
        target = self.supervisor.target
        app = target.device.apps.get(app_uuid) if target is not None and app_uuid else None
        chosen = app.release if app is not None else None
        if chosen is None or service not in chosen[1].services:
            return None
        return chosen[1].services[service].id or None

    def _network_identity(self) -> dict[str, str]:
        at, value = self._network
        if not value or time.monotonic() - at > NETWORK_REFRESH_S:
            value = network_identity()
            self._network = (time.monotonic(), value)
        return value

    def info(self) -> dict[str, Any]:
        """Identity fields of the report: versions, addresses, the supervisor API."""
        info: dict[str, Any] = {"os_version": self._os_version,
                                "os_variant": self.config.os_variant or "dev",
                                "supervisor_version": self.supervisor.device.supervisor_version,
                                "provisioning_progress": None,
                                **self._network_identity()}
        api_key = self.supervisor.store.api_key(app_uuid="")
        if api_key:
            info["api_port"] = self.config.listen_port
            info["api_secret"] = api_key
        return info

    def current_report(self) -> dict[str, Any] | None:
        """The full current report (None until the engine was observed once)."""
        sup = self.supervisor
        observed = sup.state.observed
        if observed is None:
            return None
        apps = apps_report(target=sup.target, apps=sup.store.apps(), images=sup.store.images(),
                           observed=observed)
        return device_report(app_state=sup.state.app_state, apps=apps, info=self.info(),
                             metrics=self.metrics.read())

    async def register(self) -> DeviceConfig:
        """Register (or confirm registration), retrying network failures with backoff; a
        refusal is logged and retried at the poll interval, since only a person can fix it."""
        logs = self.supervisor.logs
        failures = 0
        while True:
            try:
                info = {"supervisor_version": self.supervisor.device.supervisor_version,
                        "os_version": self._os_version, **self._network_identity()}
                config = await ensure_registered(config_path=self.config_path,
                                                 client=self.client, store=self.supervisor.store,
                                                 info=info)
            except RegistrationRefused as exc:
                logs.system(f"Registration refused, retrying in"
                            f" {self.config.poll_interval_s:g}s: {exc}", error=True)
                await asyncio.sleep(self.config.poll_interval_s)
                continue
            except CloudError as exc:
                failures += 1
                delay = max(backoff_s(failures=failures, cap_s=self.config.poll_interval_s),
                            exc.retry_after_s or 0.0)
                logs.system(f"Cannot register yet, retrying in {delay:.1f}s: {exc}",
                            error=True)
                await asyncio.sleep(delay)
                continue
            if config.uuid != self.supervisor.device.uuid:
                logs.system(f"config.json names uuid {config.uuid}, the supervisor runs as"
                            f" {self.supervisor.device.uuid}", error=True)
            return config

    async def pin_preloaded(self, *, uuid: str, api_key: str) -> bool:
        """pinDevice: before the first poll, ask the server to pin this device to the release
        apps.json preloaded; the flag is cleared only once the server accepted (network and
        server errors are retried with backoff, and at the next start after a crash). A
        release the server refuses (not in this fleet, not successful) drops the flag: the
        device then follows its fleet. True when pinned."""
        store, logs = self.supervisor.store, self.supervisor.logs
        pin = pending_pin(store=store)
        if pin is None:
            if store.get_config(key=PIN_KEY) == "true":
                logs.system("pinDevice is set but no preloaded release is known; not pinning,"
                            " the device follows its fleet", error=True)
                clear_pin(store=store)
            return False
        logs.system(f"pinDevice: pinning this device to its preloaded release {pin.commit}")
        failures = 0
        while True:
            try:
                await self.client.pin_release(uuid=uuid, api_key=api_key, commit=pin.commit)
            except PinRefused as exc:
                logs.system(f"pinDevice dropped: the server refused the preloaded release"
                            f" {pin.commit} ({exc}); the device follows its fleet's target"
                            f" (pin it by hand: edgefleet device pin {uuid[:7]} <commit>)",
                            error=True)
                clear_pin(store=store)
                return False
            except CloudError as exc:
                failures += 1
                delay = max(backoff_s(failures=failures, cap_s=self.config.poll_interval_s),
                            exc.retry_after_s or 0.0)
                logs.system(f"Cannot pin to the preloaded release yet (pinDevice kept),"
                            f" retrying in {delay:.1f}s: {exc}", error=True)
                await asyncio.sleep(delay)
                continue
            clear_pin(store=store)
            logs.system(f"Pinned to the preloaded release {pin.commit}: newer releases of the"
                        f" fleet are not applied until the device is unpinned"
                        f" (edgefleet device pin {uuid[:7]} --unpin)")
            return True

    async def run(self) -> None:
        """Register, pin a preloaded device (pinDevice), then poll, report and stream logs
        until cancelled."""
        streamer = asyncio.create_task(self.streamer.run(ready=self.registered))
        self._streamer_task = streamer
        tasks: list[asyncio.Task[None]] = [streamer, *self._lan_tunnel()]
        try:
            config = await self.register()
            uuid, key = str(config.uuid), str(config.device_api_key)
            self.config = config
            self.supervisor.logs.system(f"Registered with {self.config.api_endpoint} as {uuid}")
            self.streamer.uuid, self.streamer.api_key = uuid, key
            # services with the balena-api feature get this device's own key and the API URL
            sup = self.supervisor
            sup.targets.device = sup.targets.device.model_copy(update={
                "device_api_key": key, "api_endpoint": str(config.api_endpoint or "")})
            self.registered.set()
            await self.pin_preloaded(uuid=uuid, api_key=key)
            self.poller = Poller(supervisor=self.supervisor, client=self.client, uuid=uuid,
                                 api_key=key, default_interval_s=config.poll_interval_s)
            if self._poll_requested:
                self.poller.poll_now()
            self.reporter = Reporter(client=self.client, uuid=uuid, api_key=key,
                                     current=self.current_report, logs=self.supervisor.logs,
                                     policy=self.report_policy)
            tasks += [asyncio.create_task(self.poller.run()),
                      asyncio.create_task(self._report_loop()),
                      asyncio.create_task(self._tunnel(uuid=uuid, api_key=key))]
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(*tasks)
            await self.client.close()

    async def shutdown(self, *, timeout_s: float = 3.0) -> None:
        """Before the link is cancelled: let the log upload send what is left (the last lines
        say why the supervisor stops) and end cleanly, within `timeout_s`."""
        task = self._streamer_task
        if not self.registered.is_set() or task is None or task.done():
            return
        self.streamer.finish()
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)

    async def _tunnel(self, *, uuid: str, api_key: str) -> None:
        """The remote-access tunnel, beside polls and reports (its failures never reach
        them); the server uses it to say "poll now" when the target changes."""
        from edgefleet.device.tunnel.link import TunnelLink
        from edgefleet.device.tunnel.sessions import SessionContext

        device = self.supervisor.device
        tunnel = TunnelLink(endpoint=str(self.config.api_endpoint), uuid=uuid, api_key=api_key,
                            ctx=SessionContext(engine_socket=device.engine_socket,
                                               scope=device.scope),
                            logs=self.supervisor.logs, on_poll=self.poll_now, tls=self.tls)
        self.tunnel = tunnel
        while True:
            try:
                await tunnel.run()
            except Exception as exc:  # a bug in the tunnel must not end polls and reports
                self.supervisor.logs.system(f"Tunnel failed: {exc!r}", error=True)
                await asyncio.sleep(10)

    def _lan_tunnel(self) -> list[asyncio.Task[None]]:
        """The tunnel on the LAN (for a gateway device), when configured; it needs no server."""
        from edgefleet.device.tunnel.lan import lan_port, serve_lan
        from edgefleet.device.tunnel.sessions import SessionContext

        port = lan_port(self.config.lan_tunnel_port)
        if port is None:
            return []
        device, store = self.supervisor.device, self.supervisor.store
        return [asyncio.create_task(serve_lan(
            port=port, api_key=lambda: store.api_key(app_uuid=""), logs=self.supervisor.logs,
            ctx=SessionContext(engine_socket=device.engine_socket, scope=device.scope)))]

    async def _report_loop(self) -> None:
        assert self.reporter is not None and self.poller is not None
        while True:
            self.reporter.set_backoff_cap(cap_s=self.poller.interval_s)
            try:
                await self.reporter.tick()
            except Exception as exc:  # a bug must not end reporting
                self.supervisor.logs.system(f"State report failed: {exc!r}", error=True)
                await asyncio.sleep(self.report_policy.backoff_base_s)
            await asyncio.sleep(1.0)
