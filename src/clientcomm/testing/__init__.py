"""clientcomm.testing."""
