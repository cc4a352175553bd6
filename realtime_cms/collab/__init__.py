"""Live co-editing: CRDT rooms, the durable update log, y-protocols codecs (no transport)."""
