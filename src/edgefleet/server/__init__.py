"""The fleet server: fleets, releases, configuration, device status (balena-compatible)."""
