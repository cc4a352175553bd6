"""Live documents over REST: content reads, binary state and updates, grants and presence."""
