"""The sensorpipe CLI and the all-in-one local runner: the only package that wires components."""
