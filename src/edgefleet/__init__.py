"""edgefleet: keep multi-container applications running on fleets of Linux edge devices."""

__version__ = "0.1.0"
