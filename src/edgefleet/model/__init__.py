"""Pure data: config.json, target and current state, compose normalisation, engine naming. No I/O."""
