"""Accounts: login sessions, remember-me and API tokens, password recovery, user administration."""
