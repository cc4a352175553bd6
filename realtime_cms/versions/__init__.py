"""Content versions: compact storage, history, diffs, restores, autosave and retention."""
