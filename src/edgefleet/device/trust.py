"""Which TLS certificates a device trusts for its fleet server: the machine's own CA store
(what `update-ca-certificates` installs, and what the engine trusts), the standard bundle
httpx ships with (certifi), and config.json's `balenaRootCA` when it has one, as balenaOS does
for a self-hosted server with its own CA (openBalena) or a network that re-signs TLS."""

from __future__ import annotations

import ssl

import certifi

from edgefleet.model.config import DeviceConfig


def server_tls(config: DeviceConfig) -> ssl.SSLContext | None:
    """An SSL context for the device's API calls and tunnel; None for a plain-HTTP server (no
    certificates loaded). A bad balenaRootCA never gets here: config.json's validation ignores
    it and says so."""
    if not (config.api_endpoint or "").startswith("https://"):
        return None
    return tls_context(config.root_ca)


def tls_context(root_ca: str | None) -> ssl.SSLContext:
    """The system's store, certifi, and `root_ca` (PEM) when given."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    if root_ca is not None:
        ctx.load_verify_locations(cadata=root_ca)
    return ctx
