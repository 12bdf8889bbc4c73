"""Device types the server knows, with the values Dockerfile.template substitutes."""

from __future__ import annotations

DEVICE_TYPES: dict[str, str] = {
    "generic-amd64": "amd64",
    "intel-nuc": "amd64",
    "qemux86-64": "amd64",
    "genericx86-64-ext": "amd64",
    "qemux86": "i386",
    "generic-aarch64": "aarch64",
    "raspberrypi3-64": "aarch64",
    "raspberrypi4-64": "aarch64",
    "raspberrypi5": "aarch64",
    "jetson-nano": "aarch64",
    "raspberrypi3": "armv7hf",
    "raspberrypi2": "armv7hf",
    "beaglebone-black": "armv7hf",
    "raspberry-pi": "rpi",
}
"""balena machine name → balena arch (`%%BALENA_MACHINE_NAME%%` → `%%BALENA_ARCH%%`)."""


def arch_of(device_type: str) -> str | None:
    return DEVICE_TYPES.get(device_type)


def same_arch(*, device_type: str, fleet_type: str) -> bool:
    """Whether a device of `device_type` can run a fleet built for `fleet_type`."""
    if device_type == fleet_type:
        return True
    arch = arch_of(device_type)
    return arch is not None and arch == arch_of(fleet_type)
