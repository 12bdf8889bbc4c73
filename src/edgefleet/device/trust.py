"""Which TLS certificates a device trusts for its fleet server: the standard CA bundle (the
one httpx uses), plus config.json's `balenaRootCA` when it has one, as balenaOS does for a
self-hosted server with its own CA (openBalena) or a network that re-signs TLS."""

from __future__ import annotations

import ssl

import certifi

from edgefleet.model.config import DeviceConfig


def server_tls(config: DeviceConfig) -> ssl.SSLContext | None:
    """An SSL context trusting the bundle and `balenaRootCA`; None without one (then every
    client keeps its default: the bundle). A bad balenaRootCA never gets here: config.json's
    validation ignores it and says so."""
    pem = config.root_ca
    if pem is None:
        return None
    ctx = ssl.create_default_context(cafile=certifi.where())
    ctx.load_verify_locations(cadata=pem)
    return ctx
