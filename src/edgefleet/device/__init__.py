"""The supervisor runtime: loop, executor, locks, store, cloud link, local API, logs."""
