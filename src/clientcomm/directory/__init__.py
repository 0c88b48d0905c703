"""clientcomm.directory."""
