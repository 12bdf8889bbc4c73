"""The reconciler's brain: `plan(observed, desired, context) -> Plan`, pure and deterministic."""
