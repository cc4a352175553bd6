"""Test support code: throwaway database and cache servers for the test session."""
