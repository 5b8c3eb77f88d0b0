"""Helpers shared by the tests (test-only code; the product never imports this)."""
