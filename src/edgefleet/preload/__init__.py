"""Preload: extract images from a data root, inject them into another, write apps.json."""
