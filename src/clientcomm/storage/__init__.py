"""clientcomm.storage."""
