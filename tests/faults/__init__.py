"""The fault battery: acknowledged edits survive database, Redis and node faults, and the
sockets survive fuzzed input (`pytest -m faults` runs it alone)."""
