"""Executors: how ready work reaches a worker. `base` holds the Protocol every executor meets."""
