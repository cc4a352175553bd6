"""Notifications: templates, categories, preferences, notify, digests, read state, live hub."""
