"""Fixtures of the sharing tests."""

from tests.conformance.conftest import any_directory

__all__ = ["any_directory"]
