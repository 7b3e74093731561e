"""Monitoring: the rolling stats store and the charts built from it."""
