"""The device<->server tunnel protocol: frames, multiplexed streams and credit-based flow
control over any websocket (`Transport`)."""
