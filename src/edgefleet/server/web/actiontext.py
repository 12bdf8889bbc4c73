"""What each device action stops, said in its confirmation dialog (seed 000 §3)."""

from __future__ import annotations

STOPS = {
    "restart": "Every service of the device stops and starts again.",
    "restart-service": "Service '{service}' stops and starts again.",
    "stop-service": "Service '{service}' stops, and stays stopped until started.",
    "start-service": "Nothing stops: service '{service}' starts.",
    "reboot": "The whole device goes down and every service stops until it is back.",
    "shutdown": "The device powers off: every service stops, and someone must power it on "
                "again on site.",
    "purge": "Every service stops and its data volumes are deleted (this cannot be undone).",
    "identify": "Nothing stops: the device blinks its LED.",
}
DEVICE_WIDE = ("restart", "reboot", "shutdown", "purge", "identify")
SERVICE_ACTIONS = ("restart-service", "stop-service", "start-service")
CONFIRM = ("restart", "reboot", "shutdown", "purge", "restart-service", "stop-service")
"""Actions that stop something: the page asks first."""
