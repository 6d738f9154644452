"""Shared kernel of sensorpipe: wire format, topics, settings, database, registry, logging,
metrics, errors, and the pure scoring library every component uses.

Components (`ingestor`, `scorer`, `api`, `simulators`) import from here and never from each other.
"""
