"""Sub-commands of the ``sensorpipe`` CLI, one module each."""
