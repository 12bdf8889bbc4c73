"""The supervisor API on `listenPort` (balena-compatible): app factory, auth, routes, server."""
