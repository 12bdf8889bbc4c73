"""The device's tunnel to its fleet server: the link (connect, ping, reconnect) and the
sessions it serves (TCP, host shells and commands, shells and commands in services)."""
