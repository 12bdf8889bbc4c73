"""The server's side of remote access: the tunnel hub (device links), the user relay,
actions and diagnostics through the tunnel, and the audit trail."""
