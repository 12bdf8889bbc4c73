"""Health checks and the diagnostics report, over a `Host` view."""
