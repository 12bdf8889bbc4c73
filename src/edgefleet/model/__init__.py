"""Pure data: config.json, target and current state, compose normalisation, naming. No I/O."""
