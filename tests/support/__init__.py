"""Helpers shared by every tier of the tests, each defined once (docs/testing.md)."""
